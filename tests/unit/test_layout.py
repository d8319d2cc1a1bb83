"""The house rules of the layout, checked on the source: no import cycles between project modules
(function-level imports included, so a cycle cannot hide), the policy layer stays pure, the
Triton stub's package stays free of the client, and the CLI only parses flags."""

from __future__ import annotations

import ast

from orchestrator.paths import PROJECT_ROOT

PACKAGES = ("orchestrator", "triton_backend", "tiny_model", "build_engines")


def module_name(path) -> str:
    rel = path.relative_to(PROJECT_ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_modules() -> dict[str, object]:
    return {module_name(p): p for pkg in PACKAGES for p in (PROJECT_ROOT / pkg).rglob("*.py")}


def imports_of(path, modules: dict) -> set[str]:
    """Project modules imported anywhere in the file (``from a import b`` counts a.b when b is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in modules}
    return out


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {m: imports_of(p, mods) - {m} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_takes_part_in_an_import_cycle():
    assert cycles(graph()) == []


def test_the_policy_layer_imports_no_serving_triton_or_model_code():
    forbidden = ("orchestrator.serve", "orchestrator.triton", "tiny_model", "triton_backend", "build_engines")
    bad = {m: sorted(i for i in deps if i.startswith(forbidden)) for m, deps in graph().items() if m.startswith("orchestrator.policy")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_triton_stub_package_imports_no_orchestrator_code():
    bad = {m: sorted(d for d in deps if d.startswith("orchestrator")) for m, deps in graph().items() if m.startswith("triton_backend")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_cli_only_parses_flags_and_calls_one_function_per_command():
    tree = ast.parse((PROJECT_ROOT / "orchestrator" / "cli.py").read_text())
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")):
        calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                 and n.func.id[0].islower() and not n.func.id.startswith(("parse_", "_"))  # flag parsing helpers
                 and n.func.id not in {"tuple", "frozenset", "str", "int", "set", "sorted", "list", "len"}]
        loops = [n for n in ast.walk(fn) if isinstance(n, (ast.For, ast.While))]
        assert len({c.func.id for c in calls}) <= 1 and not loops, f"argus {fn.name} does more than call one function: {[c.func.id for c in calls]}"
