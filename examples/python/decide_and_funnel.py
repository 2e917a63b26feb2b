# %% [markdown]
# # Deciding a population from Python, then reading the decision log
#
# A notebook-style script (cells marked `# %%` open as cells in Jupyter,
# VS Code or Spyder; `python examples/python/decide_and_funnel.py` runs it
# whole). It decides the retail bank's population on the web channel with
# one call, reads the decision log back as polars DataFrames, and plots
# where candidate actions were lost and which actions won.
#
# Needs: `pip install ./crates/nextbest-py matplotlib` from the repository.

# %%
import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files; no display needed
import matplotlib.pyplot as plt
import polars as pl

import nextbest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules" / "retail_bank"

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="funnel.png", help="where to write the plot (PNG)")
parser.add_argument("--channel", default="web")
args, _ = parser.parse_known_args()  # tolerate a notebook kernel's own arguments

# %% [markdown]
# ## Decide for every customer
# The population is JSON lines (`customer_id`, `context`); one column per
# context attribute is all `decide_batch` needs. Every decision goes to the
# decision log, as it would in production.

# %%
workdir = Path(tempfile.mkdtemp(prefix="nextbest-example-"))
log_path = workdir / "decisions.jsonl"
engine = nextbest.Engine(RULES, decision_log={"path": log_path})

customers = pl.read_ndjson(RULES / "customers.jsonl").drop("channel").unnest("context")
decisions = engine.decide_batch(customers, args.channel, now="2026-11-23T10:00:00Z")
engine.flush()  # everything logged is on disk
print(f"{customers.height:,} customers, {decisions.height:,} actions chosen")
print(decisions.head())

# %% [markdown]
# ## Read the log back

# %%
log = nextbest.read_log(log_path)
print(log.select("customer_id", "arm", "first_action", "context.segment").head())
first = (
    log.group_by("context.segment", "first_action")
    .len()
    .sort("context.segment", "len", descending=[False, True])
)
print(first.group_by("context.segment", maintain_order=True).head(2))

# %% [markdown]
# ## The funnel: where candidates were lost

# %%
funnel = nextbest.funnel(log_path)
print(funnel)
wins = decisions.group_by("action").len().sort("len", descending=True).head(10)

fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
left.barh(funnel["stage"].to_list()[::-1], funnel["removed"].to_list()[::-1], color="#c0504d")
left.set_title(f"Candidates removed per stage ({args.channel}, {log.height:,} decisions)")
left.set_xlabel("candidates removed")
for y, (n, share) in enumerate(zip(funnel["removed"].to_list()[::-1], funnel["share"].to_list()[::-1])):
    if n:
        left.text(n, y, f" {share:.0%}", va="center", fontsize=8)
right.barh(wins["action"].to_list()[::-1], wins["len"].to_list()[::-1], color="#4f81bd")
right.set_title("Most chosen actions")
right.set_xlabel("times chosen")
fig.tight_layout()
fig.savefig(args.out, dpi=110)
print(f"wrote {args.out}")
