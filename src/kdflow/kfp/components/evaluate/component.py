"""kdflow.stages.evaluate -> metrics/ (for register), plus the KFP UI views: scalars, the student's
confusion matrix and the HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def evaluate(params: Input[Artifact], data: Input[Dataset], teacher: Input[Model], baseline: Input[Model],
             student: Input[Model], metrics: Output[Artifact], scalars: Output[Metrics],
             confusion: Output[ClassificationMetrics], report: Output[HTML]):
    """kdflow.stages.evaluate of teacher, baseline and student on the test split."""
    import json
    import shutil
    from pathlib import Path

    from kdflow.kfp.artifacts import metrics_views
    from kdflow.kfp.params import stage_params
    from kdflow.stages import evaluate as stage

    inputs = {"data": Path(data.path), "teacher": Path(teacher.path), "baseline": Path(baseline.path),
              "student": Path(student.path)}
    stage.run(stage_params(params.path), inputs, {"metrics": Path(metrics.path)})
    values, classes, matrix = metrics_views(metrics.path, data.path)
    for name, value in values.items():
        scalars.log_metric(name, value)
    confusion.log_confusion_matrix(classes, matrix)
    # the views as files too: a cache (kfp.local's) treats an output artifact without a file as lost
    Path(scalars.path).write_text(json.dumps(values))
    Path(confusion.path).write_text(json.dumps({"classes": classes, "matrix": matrix}))
    shutil.copyfile(Path(metrics.path) / "report.html", report.path)
