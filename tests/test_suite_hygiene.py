"""Checks on the test suite itself.

pytest 9.2 refuses a NumPy scalar as a ``pytest.approx`` tolerance (``TypeError: absolute
tolerance for a scalar value must be an int, float or Decimal, got float32``), which turned
main red without a change of ours. Every tolerance handed to ``approx`` must therefore be a
literal number or an explicit ``float(...)``, so that the kind of the value is visible where
it is written.
"""

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
TOLERANCE_KEYWORDS = ("abs", "rel")


def _is_plain_number(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        return _is_plain_number(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_plain_number(node.left) and _is_plain_number(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id == "float"
    return False


def _approx_tolerances(tree: ast.AST):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name != "approx":
            continue
        for keyword in node.keywords:
            if keyword.arg in TOLERANCE_KEYWORDS:
                yield keyword


def _sources():
    return sorted(p for p in TESTS.rglob("*.py") if "data" not in p.relative_to(TESTS).parts)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_approx_tolerances_are_python_numbers(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [
        f"{path.name}:{kw.value.lineno}: {kw.arg}={ast.unparse(kw.value)}"
        for kw in _approx_tolerances(tree)
        if not _is_plain_number(kw.value)
    ]
    assert not bad, "wrap these tolerances in float(...): " + "; ".join(bad)


def test_the_check_catches_a_numpy_tolerance():
    bad = ast.parse("pytest.approx(1.0, abs=np.float32(1e-6))")
    good = ast.parse("pytest.approx(1.0, abs=float(np.float32(1e-6)), rel=-1e-3 * 2)")
    assert [_is_plain_number(k.value) for k in _approx_tolerances(bad)] == [False]
    assert [_is_plain_number(k.value) for k in _approx_tolerances(good)] == [True, True]
