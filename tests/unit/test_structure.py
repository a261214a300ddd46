"""The code stays readable: short functions, and the training job's run() reads as its steps."""
import ast
import inspect
from pathlib import Path

from byoc.training import main

ROOT = Path(__file__).resolve().parents[2]
LONGEST_FUNCTION = 60


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_60_lines():
    long = [f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
            for folder in ("code", "ecr", "scripts") for path in sorted((ROOT / folder).rglob("*.py"))
            for name, line, length in functions(path) if length > LONGEST_FUNCTION]
    assert not long, "split these:\n" + "\n".join(long)


def test_the_training_job_reads_as_its_steps():
    assert len(inspect.getsource(main.run).splitlines()) <= 40
