"""Pipeline stages. Each module has `run(cfg, inputs, outputs) -> summary dict` and knows nothing of
DVC, Kubeflow or the CLI: those map their paths to it."""

STAGES = ("prepare", "train_teacher", "soft_targets", "train_baseline", "distill", "finetune", "evaluate",
          "register")
