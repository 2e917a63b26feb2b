# %% [markdown]
# # A campaign from Python: decide a population, read the log, plot the funnel and the lift
#
# A notebook-style script (cells marked `# %%` open as cells in Jupyter,
# VS Code or Spyder; `python examples/python/campaign.py` runs it whole and
# writes the figure). It runs the retail bank's rules as an experiment
# (the rules as they are against a random-eligible control group), decides
# the whole population with one call, reads the decision log back as
# polars DataFrames, and plots where candidate actions were lost, which
# actions won, and the lift of the strategy over control.
#
# Needs: `pip install ./crates/nextbest-py matplotlib` from the repository.

# %%
import argparse
import random
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files; no display needed
import matplotlib.pyplot as plt
import polars as pl

import nextbest

REPO = Path(__file__).resolve().parents[2]
RETAIL = REPO / "rules" / "retail_bank"
NOW = "2026-11-23T10:00:00Z"

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="campaign.png", help="where to write the figure (PNG)")
parser.add_argument("--channel", default="web")
args, _ = parser.parse_known_args()  # tolerate a notebook kernel's own arguments

# %% [markdown]
# ## The rules, as an experiment
# A copy of the retail bank's rules with an `[experiment]`: 20% of the
# customers (by a stable hash of their id) form a control group that gets
# a random eligible action instead of the ranked one.

# %%
workdir = Path(tempfile.mkdtemp(prefix="nextbest-campaign-"))
rules = workdir / "retail_bank"
shutil.copytree(RETAIL, rules)
with open(rules / "ruleset.toml", "a") as f:
    f.write(
        '\n[experiment]\nname = "campaign"\nsalt = "example"\n'
        'control_share = 0.2\ncontrol = "random_eligible"\n'
    )

# %% [markdown]
# ## Decide for every customer
# The population is JSON lines (`customer_id`, `context`); one column per
# context attribute is all `decide_batch` needs. Every decision goes to the
# decision log, as it would in production.

# %%
log_path = workdir / "decisions.jsonl"
engine = nextbest.Engine(rules, decision_log={"path": log_path})
customers = pl.read_ndjson(RETAIL / "customers.jsonl").drop("channel").unnest("context")
decisions = engine.decide_batch(customers, args.channel, now=NOW)
engine.flush()  # everything logged is on disk
print(f"{customers.height:,} customers, {decisions.height:,} actions chosen")
print(decisions.head())

# %% [markdown]
# ## Read the log back

# %%
log = nextbest.read_log(log_path)
print(log.group_by("arm").len())
print(
    log.group_by("context.segment", "first_action")
    .len()
    .sort("context.segment", "len", descending=[False, True])
    .group_by("context.segment", maintain_order=True)
    .head(2)
)

# %% [markdown]
# ## Outcomes
# In production they come back from the channel (`engine.record_outcome`
# as customers click, accept or reject). Here they are drawn: a customer
# accepts the first action with three times its logged propensity.

# %%
firsts = (
    nextbest.read_candidates(log_path)
    .filter(pl.col("rank") == 1)
    .select("decision_id", "propensity")
)
draw = random.Random(1)
for row in log.join(firsts, on="decision_id").iter_rows(named=True):
    accepted = draw.random() < min(1.0, 3 * row["propensity"])
    engine.record_outcome(
        row["customer_id"], row["first_action"], args.channel,
        "accepted" if accepted else "rejected",
        decision_id=row["decision_id"], timestamp="2026-11-23T12:00:00Z",
    )
engine.flush()

# %% [markdown]
# ## The funnel, the winners and the lift over control

# %%
funnel = nextbest.funnel(log_path)
print(funnel)
wins = decisions.group_by("action").len().sort("len", descending=True).head(10)
report = nextbest.impact(log_path)
arms = pl.DataFrame(report["arms"]).select("arm", "decisions", "acceptance_rate").unnest(
    "acceptance_rate"
)
lift = (
    pl.DataFrame(report["lifts"])
    .filter((pl.col("metric") == "acceptance_rate") & (pl.col("control") == "control"))
    .unnest("lift")
    .row(0, named=True)
)
print(arms)
print(f"lift of the {lift['test']} over control: {lift['value']:+.0%} "
      f"[{lift['low']:+.0%}, {lift['high']:+.0%}]")

fig, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 4.8))
stages, removed, shares = (funnel[c].to_list()[::-1] for c in ("stage", "removed", "share"))
left.barh(stages, removed, color="#c0504d")
left.set_title(f"Candidates removed per stage ({args.channel}, {log.height:,} decisions)")
left.set_xlabel("candidates removed")
for y, (n, share) in enumerate(zip(removed, shares)):
    if n:
        left.text(n, y, f" {share:.0%}", va="center", fontsize=8)
middle.barh(wins["action"].to_list()[::-1], wins["len"].to_list()[::-1], color="#4f81bd")
middle.set_title("Most chosen actions")
middle.set_xlabel("times chosen")
rate, low, high = (arms[c].to_list() for c in ("value", "low", "high"))
right.bar(arms["arm"].to_list(), rate, color=["#4f81bd", "#9bbb59"][: arms.height],
          yerr=[[r - lo for r, lo in zip(rate, low)], [hi - r for r, hi in zip(rate, high)]],
          capsize=8)
right.set_title(f"Acceptance rate per arm, 95% intervals\nlift over control {lift['value']:+.0%} "
                f"[{lift['low']:+.0%}, {lift['high']:+.0%}]")
right.set_ylabel("accepted / decisions")
fig.tight_layout()
fig.savefig(args.out, dpi=100)
print(f"wrote {args.out}")
