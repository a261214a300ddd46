"""What a finished job leaves: the test figures, the model package, metrics.json and pictures."""
import json
import logging

from byoc import model_package
from byoc.training import metrics, report
from byoc.training.engine import evaluate
from byoc.training.progress import Progress
from byoc.training.setup import Job

logger = logging.getLogger("byoc.training")


def results(job: Job, progress: Progress) -> dict:
    """The epochs' records and, with a test channel, the test figures over all ranks."""
    found = {"epochs": progress.history}
    if "test" in job.eval_loaders:
        classes = job.spec.class_names
        test, confusion = evaluate(job.model, job.eval_loaders["test"], job.device, len(classes),
                                   job.hp.channels_last, job.group.sum)
        per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
        found.update(test_loss=test["loss"], test_acc=test["acc"], test_per_class_acc=dict(zip(classes, per_class)),
                     test_confusion=confusion.tolist())
        logger.info(metrics.final_line(found))
    return found


def write_outputs(job: Job, found: dict) -> None:
    """The model package to /opt/ml/model, metrics and pictures to /opt/ml/output/data (rank 0 only)."""
    model_package.save(job.model, job.spec, job.model_dir)
    output = job.output_data_dir
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(found, indent=2) + "\n")
    if found["epochs"]:
        report.training_curves(found["epochs"], output / "training_curves.png")
    if "test_confusion" in found:
        report.confusion_matrix(found["test_confusion"], job.spec.class_names, output / "confusion_matrix.png")
    logger.info("model written to %s, metrics to %s", job.model_dir, output / "metrics.json")
