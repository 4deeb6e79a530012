"""Reading a DataFrame's physical plan in tests: which operators Spark chose, before it runs."""

from __future__ import annotations


def physical_plan(df):
    """The plan ``df`` would execute (py4j), adaptive execution's initial plan when it is on."""
    plan = df._jdf.queryExecution().executedPlan()
    return plan.executedPlan() if plan.nodeName() == "AdaptiveSparkPlan" else plan


def plan_nodes(node) -> list:
    """A plan node and every node below it, parents first."""
    children = node.children()
    return [node] + [n for i in range(children.size()) for n in plan_nodes(children.apply(i))]
