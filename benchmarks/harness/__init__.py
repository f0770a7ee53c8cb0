"""What every benchmark shares, one concern per module.

Benchmarks call the stages exactly as users do (`validate(dict)` → `stages.X.run(cfg, inputs, outputs)`)
on temp directories under `benchmarks/results/tmp/` (gitignored), with MLflow on a throw-away sqlite file.

- `env`: paths, the process set-up (threads, telemetry off, private MLflow), subprocess environments
- `machine`: the machine record stored with every result, and whether other work loads it
- `profiles`: params profiles and overrides
- `stages`: one stage or the pipeline, in process, with wall and CPU seconds
- `fixtures`: data written for benchmarks (digits at 28×28, the random-pixel speed fixture)
- `clocks`: CPU seconds at past wall times, per-epoch times from the MLflow run
- `stats`: mean ± std; `tables`: markdown tables and verdicts
- `results`: results/<name>.json and the printed report; `cli`: the flags every benchmark takes
"""
