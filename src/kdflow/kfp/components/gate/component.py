"""kdflow.stages.register.gate on the evaluate metrics; the pipeline's dsl.If reads the result."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def gate(params: Input[Artifact], metrics: Input[Artifact], checks: Output[Metrics]) -> bool:
    """kdflow.stages.register.gate: every check (retention, KD gain) as a metric, True when all pass."""
    import json
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages.register import gate as register_gate

    results = register_gate(stage_params(params.path),
                            json.loads((Path(metrics.path) / "metrics.json").read_text()))
    for name, passed in results.items():
        checks.log_metric(name, float(passed))
    Path(checks.path).write_text(json.dumps(results))  # a file, as evaluate's views: cacheable
    return all(results.values())
