from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def evaluate(params: dict, data: Input[Dataset], data_hash: str, teacher: Input[Model], baseline: Input[Model],
             student: Input[Model], metrics: Output[Artifact], scalars: Output[Metrics],
             confusion: Output[ClassificationMetrics], report: Output[HTML]):
    """kdflow.stages.evaluate → metrics/ (for register), plus the KFP UI views: scalars, the student's
    confusion matrix and the HTML report."""
    import shutil
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.cluster.artifacts import check_data, metrics_views
    from kdflow.stages import evaluate as stage

    inputs = {"data": check_data(data.path, data_hash), "teacher": Path(teacher.path),
              "baseline": Path(baseline.path), "student": Path(student.path)}
    stage.run(stage_params(params), inputs, {"metrics": Path(metrics.path)})
    values, classes, matrix = metrics_views(metrics.path, data.path)
    for name, value in values.items():
        scalars.log_metric(name, value)
    confusion.log_confusion_matrix(classes, matrix)
    shutil.copyfile(Path(metrics.path) / "report.html", report.path)
