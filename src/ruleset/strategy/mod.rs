//! Scripted strategies: sandboxed rhai hooks, compiled once per version.
//!
//! A rule set may name one script (`[strategy] script = "strategies/x.rhai"`)
//! defining any of three hooks:
//! - `derive(customer)`: once per decision, before the engagement
//!   policies; returns a map of derived attributes (declared in the schema
//!   with `derived = true`), which conditions then read;
//! - `adjust(customer, candidate)`: once per candidate that passed the
//!   policies; returns the candidate with changed `propensity`,
//!   `context_weight`, `value` or `lever`, or calls `candidate.exclude(reason)`;
//! - `select(customer, ranked)`: once, with every surviving candidate in
//!   rank order; returns the final list (candidates or action ids), which is
//!   then cut to the limit.
//!
//! The sandbox: one `rhai::Engine::new_raw()` per version with only the
//! arithmetic, logic, math, string, array and map packages; no `eval`, no
//! modules, no I/O; every limit set explicitly (operations, call levels,
//! expression depths, string, array and map sizes) and a wall-clock budget
//! per decision enforced from `on_progress`. What a hook failing at
//! decision time does is the decision path's (see `crate::decide`): it
//! fails closed.
//!
//! A decision's hooks get their time (`now`, for `days_since`) and their
//! deadline from the decision, through [`HookRun`]: the time travels with
//! every call into rhai as the call's tag; the deadline sits in a cell of
//! the interpreter that [`HookScratch`] (the caller's scratch) keeps for
//! the strategy, which its `on_progress` callback reads. Nothing of it
//! lives in a thread-local.

mod lowered;
mod types;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rhai::packages::Package;
use rhai::{CallFnOptions, Dynamic, Engine as Rhai, Scope, AST};
use serde::Deserialize;

pub(crate) use lowered::Env as HookEnv;
pub(crate) use types::{Candidate, Customer};

use lowered::{Bail, Cand, Lowered};
use std::sync::Arc;

/// Sandbox limits of a strategy (`[strategy.limits]`); every one is set
/// explicitly on the rhai engine, since rhai's own defaults differ between
/// debug and release builds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Operations per hook call.
    pub max_operations: u64,
    /// Function call nesting.
    pub max_call_levels: usize,
    /// Expression nesting (statements; functions get half).
    pub max_expr_depth: usize,
    /// Longest string, in bytes.
    pub max_string_size: usize,
    /// Largest array.
    pub max_array_size: usize,
    /// Largest map.
    pub max_map_size: usize,
    /// Wall-clock budget for all hooks of one decision, microseconds.
    pub time_budget_us: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_operations: 100_000,
            max_call_levels: 16,
            max_expr_depth: 64,
            max_string_size: 4096,
            max_array_size: 1024,
            max_map_size: 256,
            time_budget_us: 2_000,
        }
    }
}

/// What a strategy hook that fails at decision time does
/// (`[strategy] on_error`): `"closed"` for every hook (the default),
/// `"open"` for every hook, or per hook, `{ derive = "open" }`.
///
/// - `derive` closed: the derived attributes are missing (conditions that
///   need them are not met; their `default`s do not apply); open: the
///   context is used as bound, defaults included.
/// - `adjust` closed: a candidate whose call fails is removed at stage
///   `strategy` with the error as its reason, and when the time budget
///   runs out every candidate is; open: a failed call leaves its candidate
///   as scoring made it, and a time-out leaves every candidate so.
/// - `select` falls back to the top N either way.
///
/// Either way an exclusion the hook made is never lost, and the decision
/// carries a diagnostic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnError {
    /// Whether a failing `derive` leaves the context as bound.
    pub derive_open: bool,
    /// Whether a failing `adjust` call leaves its candidate as scored.
    pub adjust_open: bool,
}

impl<'de> Deserialize<'de> for OnError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OnError, D::Error> {
        #[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
        #[serde(rename_all = "snake_case")]
        enum Policy {
            Closed,
            Open,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PerHook {
            derive: Option<Policy>,
            adjust: Option<Policy>,
            select: Option<Policy>,
        }
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "\"closed\", \"open\" or a table such as { derive = \"open\", adjust = \"closed\" }"
        )]
        enum Src {
            All(Policy),
            PerHook(PerHook),
        }
        Ok(match Src::deserialize(d)? {
            Src::All(p) => OnError {
                derive_open: p == Policy::Open,
                adjust_open: p == Policy::Open,
            },
            Src::PerHook(h) => {
                // `select` falls back to the top N either way.
                let _ = h.select;
                OnError {
                    derive_open: h.derive == Some(Policy::Open),
                    adjust_open: h.adjust == Some(Policy::Open),
                }
            }
        })
    }
}

/// What went wrong in a hook at decision time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `derive`, `adjust` or `select`.
    pub hook: &'static str,
    /// The script file.
    pub script: PathBuf,
    /// The line in the script, when rhai knows it.
    pub line: Option<usize>,
    /// What happened.
    pub message: String,
}

impl Diagnostic {
    /// Whether the wall-clock budget stopped the hook (the one failure
    /// that depends on the machine rather than on the decision's inputs).
    pub fn timed_out(&self) -> bool {
        self.message == BUDGET_EXCEEDED
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(
                f,
                "{}:{l}: {}: {}",
                self.script.display(),
                self.hook,
                self.message
            ),
            None => write!(
                f,
                "{}: {}: {}",
                self.script.display(),
                self.hook,
                self.message
            ),
        }
    }
}

/// A compiled strategy: the script's AST, its lowered hooks, and what it
/// takes to build its sandboxed interpreter.
pub(crate) struct Strategy {
    /// Tells this strategy's interpreters apart in a [`HookScratch`].
    id: u64,
    ast: AST,
    limits: Limits,
    /// The schema's attribute names in slot order (`customer.NAME`).
    attributes: Box<[Arc<str>]>,
    pub script: PathBuf,
    pub has_derive: bool,
    pub has_adjust: bool,
    pub has_select: bool,
    /// What a failing hook does.
    pub on_error: OnError,
    budget: Duration,
    /// The hooks lowered to the engine's own operations (see
    /// [`lowered`]); a hook that is not runs in rhai.
    lowered: Lowered,
    /// Calls of lowered hooks handed back to rhai (see [`lowered`]).
    fallbacks: std::sync::atomic::AtomicU64,
    /// Per action index: its id, group and issue as rhai strings, built on
    /// first use so that a candidate costs reference counts, not
    /// allocations.
    names: std::sync::OnceLock<Box<[[rhai::ImmutableString; 3]]>>,
    /// The schema's interned strings by symbol, built on first use.
    symbols: std::sync::OnceLock<std::sync::Arc<[rhai::ImmutableString]>>,
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strategy")
            .field("script", &self.script)
            .field("derive", &self.has_derive)
            .field("adjust", &self.has_adjust)
            .field("select", &self.has_select)
            .finish()
    }
}

/// The message of a hook stopped by the wall-clock budget.
pub(crate) const BUDGET_EXCEEDED: &str = "time budget exceeded";

/// When an interpreter's running hook must stop: nanoseconds after
/// [`epoch`], or `u64::MAX` for no deadline.
#[derive(Debug)]
struct Deadline(AtomicU64);

impl Deadline {
    const NONE: u64 = u64::MAX;

    fn set(&self, at: Option<Instant>) {
        let nanos = at.map_or(Deadline::NONE, |t| {
            t.saturating_duration_since(epoch()).as_nanos() as u64
        });
        self.0.store(nanos, Ordering::Relaxed);
    }

    fn passed(&self) -> bool {
        let at = self.0.load(Ordering::Relaxed);
        at != Deadline::NONE && epoch().elapsed().as_nanos() as u64 > at
    }
}

/// The instant deadlines count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The sandbox: rhai with only the safe packages, every limit set, and the
/// deadline in `deadline` checked every 256 operations.
fn sandbox(limits: &Limits, attributes: &[Arc<str>], deadline: Arc<Deadline>) -> Rhai {
    let mut engine = Rhai::new_raw();
    for pkg in [
        rhai::packages::LanguageCorePackage::new().as_shared_module(),
        rhai::packages::ArithmeticPackage::new().as_shared_module(),
        rhai::packages::LogicPackage::new().as_shared_module(),
        rhai::packages::BasicMathPackage::new().as_shared_module(),
        rhai::packages::BasicStringPackage::new().as_shared_module(),
        rhai::packages::MoreStringPackage::new().as_shared_module(),
        rhai::packages::BasicArrayPackage::new().as_shared_module(),
        rhai::packages::BasicMapPackage::new().as_shared_module(),
    ] {
        engine.register_global_module(pkg);
    }
    engine
        .set_max_operations(limits.max_operations.max(1))
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, (limits.max_expr_depth / 2).max(1))
        .set_max_string_size(limits.max_string_size.max(1))
        .set_max_array_size(limits.max_array_size.max(1))
        .set_max_map_size(limits.max_map_size.max(1))
        .set_max_variables(1024)
        .set_max_functions(256)
        .set_max_strings_interned(1024)
        .set_optimization_level(rhai::OptimizationLevel::Simple);
    engine.disable_symbol("eval");
    engine.disable_symbol("print");
    engine.disable_symbol("debug");
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.on_progress(move |ops| {
        if ops % 256 == 0 && deadline.passed() {
            Some(Dynamic::from(BUDGET_EXCEEDED))
        } else {
            None
        }
    });
    types::register(&mut engine, attributes);
    engine
}

/// A strategy's interpreter for one caller's decisions, with its deadline.
struct Interpreter {
    strategy: u64,
    engine: Rhai,
    deadline: Arc<Deadline>,
}

/// What a caller keeps between decisions for the strategy hooks: the
/// lowered hooks' buffers, and the interpreter of the last strategy that
/// ran a hook in rhai (built on first use: a few hundred microseconds,
/// once per strategy version and scratch).
#[derive(Default)]
pub struct HookScratch {
    lowered: lowered::Spare,
    interpreter: Option<Interpreter>,
}

impl std::fmt::Debug for HookScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookScratch")
            .field(
                "interpreter",
                &self.interpreter.as_ref().map(|i| i.strategy),
            )
            .finish_non_exhaustive()
    }
}

/// A load-time error: message and 1-based line and column in the script.
pub(crate) struct LoadError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Strategy {
    /// Build the sandbox and compile `text`. `attributes` are the schema's
    /// attribute names with their slots, for the `customer.NAME` getters.
    pub(crate) fn compile(
        script: &Path,
        text: &str,
        limits: &Limits,
        lower: bool,
        on_error: OnError,
        schema: &crate::context::schema::Schema,
    ) -> Result<Strategy, LoadError> {
        let attributes: Box<[Arc<str>]> = schema
            .attributes()
            .iter()
            .map(|a| Arc::from(a.name()))
            .collect();
        let engine = sandbox(
            limits,
            &attributes,
            Arc::new(Deadline(AtomicU64::new(Deadline::NONE))),
        );
        let ast = engine.compile(text).map_err(|e| {
            let p = e.position();
            LoadError {
                line: p.line().unwrap_or(1),
                column: p.position().unwrap_or(1),
                message: e.err_type().to_string(),
            }
        })?;
        let mut has = [false; 3];
        for f in ast.iter_functions() {
            let (i, arity, sig) = match f.name {
                "derive" => (0, 1, "derive(customer)"),
                "adjust" => (1, 2, "adjust(customer, candidate)"),
                "select" => (2, 2, "select(customer, ranked)"),
                _ => continue,
            };
            if f.params.len() != arity {
                return Err(LoadError {
                    line: 1,
                    column: 1,
                    message: format!(
                        "hook `{}` takes {} parameter(s), but is declared with {}; write `fn {sig}`",
                        f.name,
                        arity,
                        f.params.len()
                    ),
                });
            }
            has[i] = true;
        }
        if !has.iter().any(|h| *h) {
            return Err(LoadError {
                line: 1,
                column: 1,
                message: "the script defines no hook: write `fn derive(customer)`, `fn adjust(customer, candidate)` or `fn select(customer, ranked)`".into(),
            });
        }
        let lowered = if lower {
            Lowered::new(&engine, text, &ast, schema, limits)
        } else {
            let why = |h: bool| h.then(|| "`lower = false` in [strategy]".to_string());
            Lowered {
                derive: None,
                adjust: None,
                select: None,
                why: [why(has[0]), why(has[1]), why(has[2])],
            }
        };
        static IDS: AtomicU64 = AtomicU64::new(0);
        Ok(Strategy {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            lowered,
            fallbacks: std::sync::atomic::AtomicU64::new(0),
            limits: limits.clone(),
            attributes,
            ast,
            script: script.to_path_buf(),
            has_derive: has[0],
            has_adjust: has[1],
            has_select: has[2],
            on_error,
            budget: Duration::from_micros(limits.time_budget_us.max(1)),
            names: std::sync::OnceLock::new(),
            symbols: std::sync::OnceLock::new(),
        })
    }

    /// The id, group and issue of every action of `rs` as rhai strings.
    pub(crate) fn names(&self, rs: &crate::ruleset::RuleSet) -> &[[rhai::ImmutableString; 3]] {
        self.names.get_or_init(|| {
            rs.actions
                .iter()
                .map(|a| {
                    [
                        a.id.as_ref().into(),
                        rs.groups[a.group as usize].name.as_ref().into(),
                        rs.issues[a.issue as usize].name.as_ref().into(),
                    ]
                })
                .collect()
        })
    }

    /// The customer of one decision, as rhai scripts see it.
    fn customer(&self, ctx: &crate::context::Context) -> Customer {
        let symbols = self.symbols.get_or_init(|| {
            ctx.schema
                .symbols
                .texts()
                .iter()
                .map(|t| rhai::ImmutableString::from(&**t))
                .collect()
        });
        Customer(Arc::new(ctx.clone()), symbols.clone())
    }

    /// How many calls of lowered hooks were handed back to rhai so far.
    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fell_back(&self) {
        self.fallbacks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// For each hook (derive, adjust, select): whether the script defines
    /// it, and if it is not lowered, what keeps it in rhai's interpreter.
    pub(crate) fn hooks_lowered(&self) -> [(&'static str, bool, Option<&str>); 3] {
        let w = &self.lowered.why;
        [
            ("derive", self.has_derive, w[0].as_deref()),
            ("adjust", self.has_adjust, w[1].as_deref()),
            ("select", self.has_select, w[2].as_deref()),
        ]
    }

    /// Start the hooks of one decision at time `now` (epoch seconds), in
    /// `scratch`. With `wall_clock`, they stop at the strategy's time
    /// budget from now; without it (simulations, replays), only the
    /// operations budget stops them: whether a budget runs out depends on
    /// the machine's load, not on the decision's inputs, and a replay
    /// reproduces the logged time-outs instead.
    pub(crate) fn begin<'s>(
        &'s self,
        now: i64,
        wall_clock: bool,
        scratch: &'s mut HookScratch,
    ) -> HookRun<'s> {
        let HookScratch {
            lowered,
            interpreter,
        } = scratch;
        HookRun {
            strategy: self,
            lowered,
            rhai: InRhai {
                strategy: self,
                scope: Scope::new(),
                customer: None,
                now,
                deadline: wall_clock.then(|| Instant::now() + self.budget),
                interpreter,
            },
        }
    }

    /// This strategy's interpreter in `slot`, built there on first use.
    fn interpreter<'a>(&self, slot: &'a mut Option<Interpreter>) -> &'a Interpreter {
        if slot.as_ref().map(|i| i.strategy) != Some(self.id) {
            let deadline = Arc::new(Deadline(AtomicU64::new(Deadline::NONE)));
            *slot = Some(Interpreter {
                strategy: self.id,
                engine: sandbox(&self.limits, &self.attributes, deadline.clone()),
                deadline,
            });
        }
        match slot {
            Some(i) => i,
            None => unreachable!("set above"),
        }
    }

    /// A diagnostic of `hook` with no line (the engine's own checks).
    fn bad(&self, hook: &'static str, message: String) -> Diagnostic {
        Diagnostic {
            hook,
            script: self.script.clone(),
            line: None,
            message,
        }
    }

    fn diagnostic(&self, hook: &'static str, e: &rhai::EvalAltResult) -> Diagnostic {
        let message = match e {
            rhai::EvalAltResult::ErrorTerminated(token, _) => token.to_string(),
            e => e.to_string(),
        };
        Diagnostic {
            hook,
            script: self.script.clone(),
            line: e.position().line(),
            message,
        }
    }
}

/// The hooks of one decision.
pub(crate) struct HookRun<'s> {
    strategy: &'s Strategy,
    /// The lowered hooks' buffers (the caller's).
    lowered: &'s mut lowered::Spare,
    /// What runs a hook in rhai's interpreter.
    rhai: InRhai<'s>,
}

/// The hooks' calls into rhai's interpreter for one decision.
struct InRhai<'s> {
    strategy: &'s Strategy,
    scope: Scope<'static>,
    /// The customer as rhai sees it, built when a hook first runs in rhai.
    customer: Option<Customer>,
    /// The decision time, epoch seconds: every call's tag.
    now: i64,
    /// When the hooks must stop, if the wall clock applies.
    deadline: Option<Instant>,
    /// The caller's interpreter slot.
    interpreter: &'s mut Option<Interpreter>,
}

/// What `adjust` made of a candidate.
pub(crate) struct Adjusted {
    /// P, C, V and L.
    pub scores: [f64; 4],
    /// The reason, if `exclude` was called.
    pub excluded: Option<Arc<str>>,
}

/// One entry of `select`'s list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pick {
    /// A candidate (by action index).
    Action(u32),
    /// An action id, as the script wrote it.
    Id(String),
}

impl InRhai<'_> {
    fn call(
        &mut self,
        hook: &'static str,
        args: impl rhai::FuncArgs,
    ) -> Result<Dynamic, Diagnostic> {
        let opts = CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true)
            .with_tag(self.now);
        let s = self.strategy;
        let interpreter = s.interpreter(self.interpreter);
        interpreter.deadline.set(self.deadline);
        let result = interpreter.engine.call_fn_with_options::<Dynamic>(
            opts,
            &mut self.scope,
            &s.ast,
            hook,
            args,
        );
        interpreter.deadline.set(None);
        result.map_err(|e| s.diagnostic(hook, &e))
    }

    /// The customer for rhai, built on first use from `ctx`.
    fn customer(&mut self, ctx: &crate::context::Context) -> Customer {
        self.customer
            .get_or_insert_with(|| self.strategy.customer(ctx))
            .clone()
    }

    fn derive(&mut self, env: &HookEnv<'_>) -> Result<rhai::Map, Diagnostic> {
        let customer = self.customer(env.ctx);
        let out = self.call("derive", (customer,))?;
        if out.is_unit() {
            return Ok(rhai::Map::new());
        }
        let t = out.type_name();
        out.try_cast::<rhai::Map>().ok_or_else(|| {
            self.strategy.bad(
                "derive",
                format!("must return a map of derived attributes, returned {t}"),
            )
        })
    }

    fn adjust(
        &mut self,
        env: &HookEnv<'_>,
        c: &crate::base::Scored,
    ) -> Result<Adjusted, Diagnostic> {
        let scores = [c.propensity, c.context_weight, c.value, c.lever];
        let customer = self.customer(env.ctx);
        let candidate = candidate(self.strategy.names(env.rules), c);
        let out = self.call("adjust", (customer, candidate))?;
        if out.is_unit() {
            return Ok(Adjusted {
                scores,
                excluded: None,
            });
        }
        let t = out.type_name();
        let a = out.try_cast::<Candidate>().ok_or_else(|| {
            self.strategy.bad(
                "adjust",
                format!("must return the candidate (or nothing), returned {t}"),
            )
        })?;
        let scores = [a.propensity, a.context_weight, a.value, a.lever];
        check_scores(&a.id, scores).map_err(|m| self.strategy.bad("adjust", m))?;
        Ok(Adjusted {
            scores,
            excluded: a.excluded.map(|r| Arc::from(r.as_str())),
        })
    }

    fn select(
        &mut self,
        env: &HookEnv<'_>,
        ranked: &[crate::base::Scored],
    ) -> Result<Vec<Pick>, Diagnostic> {
        let customer = self.customer(env.ctx);
        let names = self.strategy.names(env.rules);
        let arr: rhai::Array = ranked
            .iter()
            .map(|c| Dynamic::from(candidate(names, c)))
            .collect();
        let out = self.call("select", (customer, arr))?;
        let t = out.type_name();
        let arr = out.try_cast::<rhai::Array>().ok_or_else(|| {
            self.strategy.bad(
                "select",
                format!("must return an array of candidates or action ids, returned {t}"),
            )
        })?;
        let mut picks = Vec::with_capacity(arr.len());
        for item in arr {
            if let Some(c) = item.clone().try_cast::<Candidate>() {
                picks.push(Pick::Action(c.action));
            } else if let Ok(s) = item.clone().into_immutable_string() {
                picks.push(Pick::Id(s.to_string()));
            } else {
                return Err(self.strategy.bad(
                    "select",
                    format!("returned an array containing {}", item.type_name()),
                ));
            }
        }
        Ok(picks)
    }
}

impl HookRun<'_> {
    /// The diagnostic of a hook that a replay skips because it timed out
    /// when the decision was made.
    pub(crate) fn replayed_timeout(&self, hook: &'static str) -> Diagnostic {
        self.strategy.bad(hook, BUDGET_EXCEEDED.to_string())
    }

    /// The context changed (derive's attributes were added): the next
    /// hook run in rhai sees the new one.
    pub(crate) fn context_changed(&mut self) {
        self.rhai.customer = None;
    }

    /// `derive(customer)`: the derived attributes, as a rhai map.
    pub(crate) fn derive(&mut self, env: &HookEnv<'_>) -> Result<rhai::Map, Diagnostic> {
        if let Some(h) = &self.strategy.lowered.derive {
            if let Ok(m) = h.runner(env, self.lowered).derive() {
                return Ok(m.unwrap_or_default());
            }
            self.strategy.fell_back();
        }
        self.rhai.derive(env)
    }

    /// `adjust(customer, candidate)` on each survivor, in order, passing
    /// each result to `each`: what the call made of the candidate, or why
    /// it failed. A failed call affects its candidate only; the calls go
    /// on, except after a time-out (the budget is the decision's: every
    /// later call would time out too), which is returned.
    pub(crate) fn adjust_each(
        &mut self,
        env: &HookEnv<'_>,
        ranked: &[crate::base::Scored],
        mut each: impl FnMut(&crate::base::Scored, Result<Adjusted, Diagnostic>),
    ) -> Result<(), Diagnostic> {
        let strategy = self.strategy;
        let mut runner = strategy
            .lowered
            .adjust
            .as_ref()
            .map(|h| h.runner(env, &mut *self.lowered));
        for c in ranked {
            let scores = [c.propensity, c.context_weight, c.value, c.lever];
            let lowered = runner.as_mut().and_then(|r| {
                // A call that would return the candidate as it came (or
                // nothing) is not made, unless its scores would fail the
                // check a returned candidate gets (context weights can add
                // up to infinity): then the call runs and fails as rhai's.
                if scores_pass(scores) && r.unchanged(c.action) {
                    return Some(Ok(Adjusted {
                        scores,
                        excluded: None,
                    }));
                }
                let cand = Cand {
                    action: c.action,
                    s: scores,
                    excluded: None,
                };
                match r.adjust(cand) {
                    Ok(None) => Some(Ok(Adjusted {
                        scores,
                        excluded: None,
                    })),
                    Ok(Some(a)) => {
                        let id = &env.rules.actions[a.action as usize].id;
                        Some(check_scores(id, a.s).map(|()| Adjusted {
                            scores: a.s,
                            excluded: a.excluded.map(Arc::from),
                        }))
                    }
                    Err(Bail) => None,
                }
            });
            let adjusted = match lowered {
                Some(Ok(a)) => Ok(a),
                Some(Err(m)) => Err(strategy.bad("adjust", m)),
                None => {
                    if runner.is_some() {
                        strategy.fell_back();
                    }
                    self.rhai.adjust(env, c)
                }
            };
            match adjusted {
                Err(d) if d.timed_out() => return Err(d),
                a => each(c, a),
            }
        }
        Ok(())
    }

    /// `select(customer, ranked)`: the final list.
    pub(crate) fn select(
        &mut self,
        env: &HookEnv<'_>,
        ranked: &[crate::base::Scored],
    ) -> Result<Vec<Pick>, Diagnostic> {
        if let Some(h) = &self.strategy.lowered.select {
            let ranked = ranked.iter().map(|c| Cand {
                action: c.action,
                s: [c.propensity, c.context_weight, c.value, c.lever],
                excluded: None,
            });
            if let Ok(picks) = h.runner(env, self.lowered).select(ranked) {
                return Ok(picks);
            }
            self.strategy.fell_back();
        }
        self.rhai.select(env, ranked)
    }
}

/// A survivor as rhai scripts see it.
fn candidate(names: &[[rhai::ImmutableString; 3]], c: &crate::base::Scored) -> Candidate {
    let [id, group, issue] = &names[c.action as usize];
    Candidate {
        action: c.action,
        id: id.clone(),
        group: group.clone(),
        issue: issue.clone(),
        propensity: c.propensity,
        context_weight: c.context_weight,
        value: c.value,
        lever: c.lever,
        excluded: None,
    }
}

/// Scores a script may set: finite, P in [0, 1], C and L not negative.
/// Whether scores pass [`check_scores`].
#[inline]
fn scores_pass([p, c, v, l]: [f64; 4]) -> bool {
    // Without short circuits between the parts: a few compares, few branches.
    (0.0..=1.0).contains(&p)
        & c.is_finite()
        & (c >= 0.0)
        & v.is_finite()
        & l.is_finite()
        & (l >= 0.0)
}

fn check_scores(id: &str, scores: [f64; 4]) -> Result<(), String> {
    let [p, c, v, l] = scores;
    if scores_pass(scores) {
        Ok(())
    } else {
        Err(format!(
            "set an invalid score for `{id}`: propensity {p} (must be in [0, 1]), context_weight {c}, value {v}, lever {l} (finite; C and L not negative)"
        ))
    }
}
