"""The params file every step reads: params_yaml with the run's typed pipeline parameters applied,
validated once here so a bad value fails before any training."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def resolve_params(params_yaml: str, data_rev: str, teacher_epochs: int, distill_epochs: int, temperature: float,
                   alpha: float, teacher_uri: str, data_uri: str, imports: list, params: Output[Artifact]):
    """kdflow.kfp.params.resolve: params_yaml + typed parameters -> params/params.yaml (validated).
    `imports`: which of teacher_uri/data_uri this pipeline was compiled to import."""
    from kdflow.kfp.params import check_imports, resolve, write

    check_imports({"teacher_uri": teacher_uri, "data_uri": data_uri}, imports)
    cfg = resolve(params_yaml, {"data_rev": data_rev, "teacher_epochs": teacher_epochs,
                                "distill_epochs": distill_epochs, "temperature": temperature, "alpha": alpha})
    write(cfg, params.path)
    params.metadata.update(digest=cfg.digest(), data_rev=cfg.data.rev or "", temperature=cfg.distill.temperature,
                           alpha=cfg.distill.alpha)
