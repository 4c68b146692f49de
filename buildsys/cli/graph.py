"""`modelbuild graph [PATTERNS] --format dot|mermaid|html [--actions]`: the target graph (or the action
graph) with each node's state in the cache: built, stale (built before, not with the current inputs),
failed (with the current inputs), never built; a model is a source.

Arrows go from what is built to what is built from it. The HTML form is one self-contained file (an
inline SVG, laid out in columns by depth, and a little script): no network when it is viewed.
Clicking a node shows what `modelbuild show` prints for it.
"""
from __future__ import annotations

import html
import io
import json

import networkx as nx
from rich.console import Console

from ..build import load_and_plan
from ..cache.lookup import ActionLookup
from ..errors import UserError
from .show import resolve_cached, show, target_state

COLORS = {"built": "#c8e6c9", "stale": "#fff3c4", "failed": "#ffcdd2", "never built": "#e0e0e0", "source": "#bbdefb"}


def nodes_and_edges(workspace, ruleset, patterns: list[str], stores, actions: bool):
    """{id: (title, kind, state, details)} and [(from, to)]: from is built before to."""
    targets, labels, planner = load_and_plan(workspace, ruleset, ["//..."], stores)
    wanted = set(targets.expand(patterns))
    lookup = ActionLookup(ruleset, stores.action_cache, stores.cas)
    every = planner.actions_for(sorted(targets.targets))
    found = resolve_cached(planner, lookup, every)
    nodes, edges = {}, []
    if actions:
        keep = set(planner.actions_for(sorted(wanted)))
        for aid in every:
            if aid not in keep:
                continue
            action, hit = planner.actions[aid], found.get(aid)
            state = ("failed" if hit is not None and hit.failure is not None else
                     "built" if hit is not None and hit.result is not None else "never built")
            title = f"{action.step} {action.subject or action.label}"
            details = (f"{action.describe()}\naction {aid[:12]}\nstate: {state}\nfor: "
                       + ", ".join(sorted(str(o) for o in action.owners)))
            nodes[aid[:12]] = (title, action.step, state, details)
            edges += [(p[:12], aid[:12]) for p in planner.graph.predecessors(aid) if p in keep]
        return nodes, edges
    closure = set(wanted)
    for label in wanted:
        closure |= nx.descendants(targets.graph, label)
    plan = (targets, planner)
    for label in sorted(closure):
        ids = planner.actions_for([label])
        state = target_state(workspace, planner, label, ids, found)
        out = io.StringIO()
        show(workspace, ruleset, str(label), stores, Console(file=out, width=110, color_system=None), plan)
        nodes[str(label)] = (str(label), targets.targets[label].kind, state, out.getvalue())
        edges += [(str(dep), str(label)) for dep in targets.graph.successors(label) if dep in closure]
    return nodes, edges


def dot(nodes: dict, edges: list) -> str:
    lines = ["digraph modelbuild {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="sans-serif"];']
    for node, (title, kind, state, _) in nodes.items():
        label = f"{title}\\n{kind}\\n{state}".replace('"', '\\"')
        lines.append(f'  "{node}" [label="{label}", fillcolor="{COLORS[state]}"];')
    lines += [f'  "{a}" -> "{b}";' for a, b in edges]
    return "\n".join(lines + ["}"]) + "\n"


def mermaid(nodes: dict, edges: list) -> str:
    ids = {node: f"n{i}" for i, node in enumerate(nodes)}
    lines = ["graph LR"]
    for node, (title, kind, state, _) in nodes.items():
        text = f"{title}<br/>{kind}<br/>{state}".replace('"', "#quot;")
        lines.append(f'  {ids[node]}["{text}"]:::{state.replace(" ", "_")}')
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in edges]
    lines += [f"  classDef {state.replace(' ', '_')} fill:{color}" for state, color in COLORS.items()]
    return "\n".join(lines) + "\n"


_W, _H, _GAP_X, _GAP_Y = 250, 46, 70, 18


def _layout(nodes: dict, edges: list) -> dict[str, tuple[int, int]]:
    """Columns by depth (what nothing is built from on the left), rows in label order."""
    graph = nx.DiGraph(edges)
    graph.add_nodes_from(nodes)
    depth = {}
    for node in nx.topological_sort(graph):
        depth[node] = max((depth[p] + 1 for p in graph.predecessors(node)), default=0)
    columns: dict[int, list[str]] = {}
    for node in sorted(nodes):
        columns.setdefault(depth[node], []).append(node)
    return {node: (20 + col * (_W + _GAP_X), 60 + row * (_H + _GAP_Y))
            for col, members in columns.items() for row, node in enumerate(members)}


def page(nodes: dict, edges: list, title: str) -> str:
    where = _layout(nodes, edges)
    width = max((x for x, _ in where.values()), default=0) + _W + 40
    height = max((y for _, y in where.values()), default=0) + _H + 40
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>']
    for a, b in edges:
        (x1, y1), (x2, y2) = where[a], where[b]
        svg.append(f'<line x1="{x1 + _W}" y1="{y1 + _H / 2}" x2="{x2}" y2="{y2 + _H / 2}" stroke="#999" '
                   f'marker-end="url(#arrow)"/>')
    for node, (name, kind, state, _) in nodes.items():
        x, y = where[node]
        svg.append(f'<g class="node" data-node="{html.escape(node)}" data-state="{state}" tabindex="0">'
                   f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="{COLORS[state]}" stroke="#555"/>'
                   f'<text x="{x + 8}" y="{y + 18}" font-size="13">{html.escape(name)}</text>'
                   f'<text x="{x + 8}" y="{y + 36}" font-size="11" fill="#444">{html.escape(kind)} · {state}</text></g>')
    svg.append("</svg>")
    details = json.dumps({node: text for node, (_, _, _, text) in nodes.items()}).replace("</", "<\\/")
    legend = " ".join(f'<span style="background:{c};padding:2px 6px;border-radius:4px">{s}</span>' for s, c in COLORS.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 0; display: flex; height: 100vh; }}
#graph {{ flex: 3; overflow: auto; padding: 8px; }} #side {{ flex: 2; border-left: 1px solid #ccc; padding: 8px; overflow: auto; }}
.node {{ cursor: pointer; }} .node.selected rect {{ stroke: #000; stroke-width: 3; }}
pre {{ white-space: pre; overflow-x: auto; font-size: 12px; }}
</style></head>
<body><div id="graph"><h3>{html.escape(title)}</h3><p>{legend} — arrows: what is built from what; click a node</p>
{"".join(svg)}</div>
<div id="side"><h3 id="title">Details</h3><pre id="details">Click a node to see what `modelbuild show` prints for it.</pre></div>
<script>
const details = {details};
document.querySelectorAll(".node").forEach(node => node.addEventListener("click", () => {{
  document.querySelectorAll(".node.selected").forEach(n => n.classList.remove("selected"));
  node.classList.add("selected");
  document.getElementById("title").textContent = node.dataset.node;
  document.getElementById("details").textContent = details[node.dataset.node];
}}));
</script></body></html>
"""


def render(fmt: str, nodes: dict, edges: list, title: str) -> str:
    if fmt == "dot":
        return dot(nodes, edges)
    if fmt == "mermaid":
        return mermaid(nodes, edges)
    if fmt == "html":
        return page(nodes, edges, title)
    raise UserError(f"unknown graph format '{fmt}'; expected dot, mermaid or html")
