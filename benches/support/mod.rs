//! Fixtures for the decision benchmarks.
//!
//! - [`Catalog::generate`]: a deterministic catalog of `n` actions (groups of
//!   about ten under four issues, group- and action-level engagement
//!   policies, context weights, levers, values, starting propensities, two
//!   channels). It renders to a [`RuleSource`] (TOML text) and keeps the same
//!   catalog as plain Rust data, so that
//! - [`floor_decide`], a hand-written function over a plain struct customer,
//!   and [`RhaiNaive`], rhai evaluating the same condition strings, can be
//!   checked to choose exactly what the engine chooses ([`check_floor`],
//!   [`check_rhai`]) before anything is timed.
//! - [`population`]: deterministic customers with correlated attributes.
//!
//! No `rand`: a splitmix64 generator keeps every run and every machine on
//! the same catalog and the same customers.

use std::ops::Range;
use std::sync::Arc;

use nextbest::{Context, DecisionRequest, Engine, RuleSet, RuleSource, Schema, Timestamp, Value};

/// The decision time of every benchmark request (benches never read the
/// clock for `now`).
pub const NOW: &str = "2026-11-23T10:00:00Z";

/// [`NOW`] parsed.
pub fn now() -> Timestamp {
    Timestamp::parse(NOW).expect("NOW is RFC 3339")
}

// ---------------------------------------------------------------------------
// PRNG

/// splitmix64 (Steele, Lea, Flood 2014).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// Index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

// ---------------------------------------------------------------------------
// Schema

pub const SEGMENTS: &[&str] = &["mass", "affluent", "gold", "platinum"];
pub const REGIONS: &[&str] = &["north", "south", "east", "west", "capital"];
pub const CALL_REASONS: &[&str] = &[
    "billing",
    "cancellation",
    "new_product",
    "complaint",
    "other",
];
pub const EMPLOYMENT: &[&str] = &[
    "employed",
    "self_employed",
    "retired",
    "student",
    "unemployed",
];
pub const PRODUCTS: &[&str] = &[
    "P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10", "P11",
];

const MASS: u8 = 0;
const AFFLUENT: u8 = 1;
const GOLD: u8 = 2;
const PLATINUM: u8 = 3;
const CANCELLATION: u8 = 1;
const COMPLAINT: u8 = 3;
const EMPLOYED: usize = 0;
const SELF_EMPLOYED: usize = 1;
const RETIRED: usize = 2;
const STUDENT: usize = 3;
const UNEMPLOYED: usize = 4;
const MORTGAGE_PRODUCT: u8 = 5;

/// The 21 context attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Age,
    TenureMonths,
    CreditScore,
    ArrearsDays,
    Dependents,
    DaysSinceLogin,
    Complaints12m,
    Income,
    Balance,
    MonthlySpend,
    ChurnScore,
    Clv,
    Vip,
    HasMortgage,
    DigitalActive,
    MarketingOptIn,
    Segment,
    Region,
    CallReason,
    Employment,
    Products,
}

/// An attribute's type in the schema.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Int,
    Float,
    Bool,
    /// A closed string attribute and its values.
    Str(&'static [&'static str]),
    /// A string set and its possible members.
    Set(&'static [&'static str]),
}

impl Attr {
    pub const ALL: [Attr; 21] = [
        Attr::Age,
        Attr::TenureMonths,
        Attr::CreditScore,
        Attr::ArrearsDays,
        Attr::Dependents,
        Attr::DaysSinceLogin,
        Attr::Complaints12m,
        Attr::Income,
        Attr::Balance,
        Attr::MonthlySpend,
        Attr::ChurnScore,
        Attr::Clv,
        Attr::Vip,
        Attr::HasMortgage,
        Attr::DigitalActive,
        Attr::MarketingOptIn,
        Attr::Segment,
        Attr::Region,
        Attr::CallReason,
        Attr::Employment,
        Attr::Products,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attr::Age => "age",
            Attr::TenureMonths => "tenure_months",
            Attr::CreditScore => "credit_score",
            Attr::ArrearsDays => "arrears_days",
            Attr::Dependents => "dependents",
            Attr::DaysSinceLogin => "days_since_login",
            Attr::Complaints12m => "complaints_12m",
            Attr::Income => "income",
            Attr::Balance => "balance",
            Attr::MonthlySpend => "monthly_spend",
            Attr::ChurnScore => "churn_score",
            Attr::Clv => "clv",
            Attr::Vip => "vip",
            Attr::HasMortgage => "has_mortgage",
            Attr::DigitalActive => "digital_active",
            Attr::MarketingOptIn => "marketing_opt_in",
            Attr::Segment => "segment",
            Attr::Region => "region",
            Attr::CallReason => "call_reason",
            Attr::Employment => "employment",
            Attr::Products => "products",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Attr::Age
            | Attr::TenureMonths
            | Attr::CreditScore
            | Attr::ArrearsDays
            | Attr::Dependents
            | Attr::DaysSinceLogin
            | Attr::Complaints12m => Kind::Int,
            Attr::Income | Attr::Balance | Attr::MonthlySpend | Attr::ChurnScore | Attr::Clv => {
                Kind::Float
            }
            Attr::Vip | Attr::HasMortgage | Attr::DigitalActive | Attr::MarketingOptIn => {
                Kind::Bool
            }
            Attr::Segment => Kind::Str(SEGMENTS),
            Attr::Region => Kind::Str(REGIONS),
            Attr::CallReason => Kind::Str(CALL_REASONS),
            Attr::Employment => Kind::Str(EMPLOYMENT),
            Attr::Products => Kind::Set(PRODUCTS),
        }
    }

    fn values(self) -> &'static [&'static str] {
        match self.kind() {
            Kind::Str(v) | Kind::Set(v) => v,
            _ => &[],
        }
    }
}

// ---------------------------------------------------------------------------
// Conditions as plain data

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn text(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    #[inline(always)]
    fn int(self, a: i64, b: i64) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }

    #[inline(always)]
    fn float(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

/// One conjunct: attribute, operator, constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pred {
    /// `age >= 25`
    Int(Attr, Cmp, i64),
    /// `income >= 30000.0`
    Float(Attr, Cmp, f64),
    /// `vip` (true) or `!vip` (false)
    Flag(Attr, bool),
    /// `segment == "gold"`, or `segment != "mass"` when negated; the
    /// constant is an index into the attribute's values.
    StrEq(Attr, bool, u8),
    /// `segment in ["gold", "platinum"]`: a bit per value index.
    StrIn(Attr, u32),
    /// `"P7" in products`, or `!("P7" in products)` when negated.
    Has(Attr, bool, u8),
}

impl Pred {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = match *self {
            Pred::Int(a, op, k) => write!(out, "{} {} {k}", a.name(), op.text()),
            Pred::Float(a, op, k) => write!(out, "{} {} {k:?}", a.name(), op.text()),
            Pred::Flag(a, true) => write!(out, "{}", a.name()),
            Pred::Flag(a, false) => write!(out, "!{}", a.name()),
            Pred::StrEq(a, neg, k) => write!(
                out,
                "{} {} \"{}\"",
                a.name(),
                if neg { "!=" } else { "==" },
                a.values()[k as usize]
            ),
            Pred::StrIn(a, mask) => {
                let items: Vec<String> = a
                    .values()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, v)| format!("\"{v}\""))
                    .collect();
                write!(out, "{} in [{}]", a.name(), items.join(", "))
            }
            Pred::Has(a, false, k) => write!(out, "\"{}\" in {}", a.values()[k as usize], a.name()),
            Pred::Has(a, true, k) => {
                write!(out, "!(\"{}\" in {})", a.values()[k as usize], a.name())
            }
        };
    }

    /// Whether the conjunct holds for `c` (the hand-written evaluation).
    #[inline(always)]
    pub fn holds(&self, c: &PlainCustomer) -> bool {
        match *self {
            Pred::Int(a, op, k) => op.int(c.int(a), k),
            Pred::Float(a, op, k) => op.float(c.float(a), k),
            Pred::Flag(a, want) => c.flag(a) == want,
            Pred::StrEq(a, neg, k) => (c.str(a) == k) != neg,
            Pred::StrIn(a, mask) => mask & (1 << c.str(a)) != 0,
            Pred::Has(_, neg, k) => (c.products & (1 << k) != 0) != neg,
        }
    }
}

/// A condition string as written in a rule file: conjuncts joined by `&&`.
#[derive(Debug, Clone)]
pub struct Condition {
    pub text: String,
    pub conjuncts: Vec<Pred>,
}

impl Condition {
    fn new(conjuncts: Vec<Pred>) -> Condition {
        let mut text = String::new();
        for (i, p) in conjuncts.iter().enumerate() {
            if i > 0 {
                text.push_str(" && ");
            }
            p.render(&mut text);
        }
        Condition { text, conjuncts }
    }

    #[inline]
    pub fn holds(&self, c: &PlainCustomer) -> bool {
        self.conjuncts.iter().all(|p| p.holds(c))
    }
}

/// The three engagement-policy stages, in order.
pub const STAGES: [&str; 3] = ["eligibility", "applicability", "suitability"];

/// V: a constant or `attr * mul + add`.
#[derive(Debug, Clone, Copy)]
pub enum ValueModel {
    Const(f64),
    Linear(Attr, f64, f64),
}

impl ValueModel {
    fn render(&self) -> String {
        match *self {
            ValueModel::Const(v) => format!("{v:?}"),
            ValueModel::Linear(a, mul, add) => format!("\"{} * {mul:?} + {add:?}\"", a.name()),
        }
    }

    #[inline(always)]
    pub fn eval(&self, c: &PlainCustomer) -> f64 {
        match *self {
            ValueModel::Const(v) => v,
            ValueModel::Linear(a, mul, add) => c.float(a) * mul + add,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IssueModel {
    pub name: &'static str,
    pub lever: f64,
}

#[derive(Debug, Clone)]
pub struct GroupModel {
    pub name: String,
    pub issue: usize,
    pub lever: f64,
    /// Condition strings per stage.
    pub policies: [Vec<Condition>; 3],
    /// Every conjunct of every stage, flattened (for the floor).
    pub all: Vec<Pred>,
    /// The group's actions (contiguous indices).
    pub actions: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct ActionModel {
    pub id: String,
    pub group: usize,
    /// Bit i: offered on channel i.
    pub channels: u8,
    pub value: ValueModel,
    pub propensity: f64,
    pub lever: f64,
    pub policies: [Vec<Condition>; 3],
    /// Every conjunct of the action's own policies, flattened.
    pub all: Vec<Pred>,
    /// L = 1 + (action + group + issue lever) / 100, summed in the
    /// engine's order.
    pub total_lever: f64,
    /// Context weights that target this action, its group or its issue,
    /// in declaration order.
    pub weights: Vec<u16>,
}

#[derive(Debug, Clone, Copy)]
pub enum Target {
    Issue(usize),
    Group(usize),
    Action(usize),
}

#[derive(Debug, Clone)]
pub struct WeightModel {
    pub when: Condition,
    pub target: Target,
    pub boost: f64,
}

#[derive(Debug, Clone)]
pub struct ChannelModel {
    pub name: &'static str,
    pub limit: usize,
}

/// A generated catalog, as plain data.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub seed: u64,
    pub issues: Vec<IssueModel>,
    pub groups: Vec<GroupModel>,
    pub actions: Vec<ActionModel>,
    pub weights: Vec<WeightModel>,
    pub channels: Vec<ChannelModel>,
}

// Thresholds come from small sets, so conditions repeat across actions as
// they do in real rule sets.
fn eligibility_pred(rng: &mut SplitMix64) -> Vec<Pred> {
    match rng.weighted(&[6.0, 2.0, 1.5, 1.5, 1.0, 1.0, 1.5, 1.0, 0.5, 0.5, 0.5]) {
        0 => vec![Pred::Int(
            Attr::Age,
            Cmp::Ge,
            rng.pick(&[18, 21, 25, 30, 40]),
        )],
        1 => vec![Pred::Int(Attr::Age, Cmp::Lt, rng.pick(&[30, 65, 75]))],
        2 => vec![Pred::StrEq(
            Attr::Segment,
            false,
            rng.pick(&[AFFLUENT, GOLD, PLATINUM]),
        )],
        3 => vec![Pred::StrIn(
            Attr::Segment,
            rng.pick(&[
                (1 << GOLD) | (1 << PLATINUM),
                (1 << AFFLUENT) | (1 << GOLD) | (1 << PLATINUM),
            ]),
        )],
        4 => vec![Pred::StrEq(Attr::Segment, true, MASS)],
        5 => vec![Pred::StrEq(Attr::Employment, true, UNEMPLOYED as u8)],
        6 => vec![Pred::Int(
            Attr::TenureMonths,
            Cmp::Ge,
            rng.pick(&[6, 12, 24, 60]),
        )],
        7 => vec![Pred::Flag(Attr::MarketingOptIn, true)],
        8 => vec![Pred::Int(Attr::Dependents, Cmp::Gt, 0)],
        9 => vec![Pred::StrIn(
            Attr::Region,
            rng.pick(&[0b00011, 0b01100, 0b10110]),
        )],
        _ => vec![Pred::Flag(Attr::Vip, true)],
    }
}

fn applicability_pred(rng: &mut SplitMix64, product: u8) -> Vec<Pred> {
    match rng.weighted(&[6.0, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 0.7, 0.3]) {
        0 => vec![Pred::Has(Attr::Products, true, product)],
        1 => vec![Pred::Has(Attr::Products, false, rng.pick(&[0, 1, 2]))],
        2 => vec![Pred::Flag(Attr::DigitalActive, true)],
        3 => vec![Pred::Int(Attr::DaysSinceLogin, Cmp::Le, rng.pick(&[7, 30]))],
        4 => vec![Pred::StrEq(Attr::CallReason, false, CANCELLATION)],
        5 => vec![Pred::StrIn(Attr::CallReason, (1 << 0) | (1 << COMPLAINT))],
        6 => vec![Pred::Int(Attr::Complaints12m, Cmp::Eq, 0)],
        7 => vec![Pred::Flag(Attr::HasMortgage, false)],
        _ => vec![Pred::Int(Attr::Complaints12m, Cmp::Ne, 0)],
    }
}

fn suitability_pred(rng: &mut SplitMix64) -> Vec<Pred> {
    match rng.weighted(&[4.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.5]) {
        0 => vec![Pred::Float(
            Attr::Income,
            Cmp::Ge,
            rng.pick(&[15000.0, 30000.0, 50000.0, 80000.0]),
        )],
        1 => vec![Pred::Int(
            Attr::CreditScore,
            Cmp::Ge,
            rng.pick(&[580, 620, 680, 720]),
        )],
        2 => vec![Pred::Int(Attr::ArrearsDays, Cmp::Eq, 0)],
        3 => vec![
            Pred::Int(Attr::CreditScore, Cmp::Ge, 620),
            Pred::Int(Attr::ArrearsDays, Cmp::Eq, 0),
        ],
        4 => vec![Pred::Float(
            Attr::Balance,
            Cmp::Ge,
            rng.pick(&[1000.0, 5000.0, 20000.0]),
        )],
        5 => vec![Pred::Float(
            Attr::MonthlySpend,
            Cmp::Ge,
            rng.pick(&[500.0, 1500.0]),
        )],
        6 => vec![Pred::Float(Attr::Clv, Cmp::Ge, rng.pick(&[1000.0, 5000.0]))],
        7 => vec![Pred::Float(
            Attr::ChurnScore,
            Cmp::Ge,
            rng.pick(&[0.5, 0.7]),
        )],
        _ => vec![Pred::Float(Attr::ChurnScore, Cmp::Lt, 0.3)],
    }
}

fn stage_pred(rng: &mut SplitMix64, stage: usize, product: u8) -> Vec<Pred> {
    match stage {
        0 => eligibility_pred(rng),
        1 => applicability_pred(rng, product),
        _ => suitability_pred(rng),
    }
}

/// Add a condition unless the list already has the same text.
fn push_unique(list: &mut Vec<Condition>, c: Condition) {
    if !list.iter().any(|x| x.text == c.text) {
        list.push(c);
    }
}

fn flatten(policies: &[Vec<Condition>; 3]) -> Vec<Pred> {
    policies
        .iter()
        .flat_map(|s| s.iter().flat_map(|c| c.conjuncts.iter().copied()))
        .collect()
}

impl Catalog {
    /// A catalog of `n_actions` actions, the same for the same arguments.
    pub fn generate(n_actions: usize, seed: u64) -> Catalog {
        assert!(n_actions > 0);
        let mut rng = SplitMix64::new(seed ^ 0x6e65_7874_6265_7374);
        let issues = vec![
            IssueModel {
                name: "growth",
                lever: 0.0,
            },
            IssueModel {
                name: "retention",
                lever: 10.0,
            },
            IssueModel {
                name: "service",
                lever: -10.0,
            },
            IssueModel {
                name: "risk",
                lever: 5.0,
            },
        ];
        let channels = vec![
            ChannelModel {
                name: "call_center",
                limit: 3,
            },
            ChannelModel {
                name: "web",
                limit: 2,
            },
        ];
        let n_groups = n_actions.div_ceil(10);
        let mut groups = Vec::with_capacity(n_groups);
        let mut actions: Vec<ActionModel> = Vec::with_capacity(n_actions);
        for g in 0..n_groups {
            let issue = rng.weighted(&[4.0, 2.0, 2.0, 1.0]);
            let mut policies: [Vec<Condition>; 3] = Default::default();
            // Group level: mostly one eligibility rule, sometimes a
            // suitability or applicability rule as well.
            if rng.chance(0.85) {
                let mut p = eligibility_pred(&mut rng);
                if rng.chance(0.1) {
                    p.push(Pred::Int(Attr::ArrearsDays, Cmp::Eq, 0));
                }
                push_unique(&mut policies[0], Condition::new(p));
            }
            if rng.chance(0.15) {
                push_unique(&mut policies[2], Condition::new(suitability_pred(&mut rng)));
            }
            if rng.chance(0.05) {
                push_unique(
                    &mut policies[1],
                    Condition::new(applicability_pred(&mut rng, 0)),
                );
            }
            let start = actions.len();
            let end = (start + 10).min(n_actions);
            let lever: f64 = rng.pick(&[0.0, 0.0, 0.0, 5.0, 10.0, -5.0]);
            for ai in start..end {
                let product = rng.below(PRODUCTS.len() as u64) as u8;
                let mut own: [Vec<Condition>; 3] = Default::default();
                let n_conds = rng.weighted(&[0.12, 0.43, 0.38, 0.07]);
                for _ in 0..n_conds {
                    let stage = rng.weighted(&[0.2, 0.45, 0.35]);
                    push_unique(
                        &mut own[stage],
                        Condition::new(stage_pred(&mut rng, stage, product)),
                    );
                }
                let value = match rng.weighted(&[0.9, 0.05, 0.03, 0.02]) {
                    0 => ValueModel::Const((rng.below(1950) + 50) as f64 / 10.0),
                    1 => ValueModel::Linear(Attr::Income, 0.002, 10.0),
                    2 => ValueModel::Linear(Attr::Balance, 0.01, 5.0),
                    _ => ValueModel::Linear(Attr::Clv, 0.02, 1.0),
                };
                let channels = match rng.weighted(&[0.6, 0.25, 0.15]) {
                    0 => 0b11,
                    1 => 0b01,
                    _ => 0b10,
                };
                let action_lever: f64 = rng.pick(&[0.0, 0.0, 0.0, 0.0, 5.0, 15.0, -10.0]);
                let total = action_lever + lever + issues[issue].lever;
                actions.push(ActionModel {
                    id: format!("A{ai:05}"),
                    group: g,
                    channels,
                    value,
                    propensity: (rng.below(300) + 5) as f64 / 1000.0,
                    lever: action_lever,
                    all: flatten(&own),
                    policies: own,
                    total_lever: 1.0 + total / 100.0,
                    weights: Vec::new(),
                });
            }
            groups.push(GroupModel {
                name: format!("g{g:04}"),
                issue,
                lever,
                all: flatten(&policies),
                policies,
                actions: start..end,
            });
        }

        // Context weights: four on issues, one on an action, one on every
        // twentieth group or so.
        let mut weights = vec![
            WeightModel {
                when: Condition::new(vec![Pred::StrEq(Attr::CallReason, false, CANCELLATION)]),
                target: Target::Issue(1),
                boost: 100.0,
            },
            WeightModel {
                when: Condition::new(vec![Pred::Float(Attr::ChurnScore, Cmp::Ge, 0.7)]),
                target: Target::Issue(1),
                boost: 50.0,
            },
            WeightModel {
                when: Condition::new(vec![Pred::StrEq(Attr::Segment, false, PLATINUM)]),
                target: Target::Issue(0),
                boost: 30.0,
            },
            WeightModel {
                when: Condition::new(vec![
                    Pred::Flag(Attr::DigitalActive, true),
                    Pred::Int(Attr::DaysSinceLogin, Cmp::Le, 7),
                ]),
                target: Target::Issue(2),
                boost: 20.0,
            },
            WeightModel {
                when: Condition::new(vec![Pred::Flag(Attr::Vip, true)]),
                target: Target::Action(n_actions / 2),
                boost: 40.0,
            },
        ];
        let n_group_weights = (n_groups / 20).max(1).min(64 - weights.len());
        for _ in 0..n_group_weights {
            let g = rng.below(n_groups as u64) as usize;
            let when = match rng.below(4) {
                0 => eligibility_pred(&mut rng),
                1 => applicability_pred(&mut rng, 0),
                _ => suitability_pred(&mut rng),
            };
            weights.push(WeightModel {
                when: Condition::new(when),
                target: Target::Group(g),
                boost: rng.pick(&[25.0, 50.0, -30.0]),
            });
        }
        for (ai, a) in actions.iter_mut().enumerate() {
            let issue = groups[a.group].issue;
            a.weights = weights
                .iter()
                .enumerate()
                .filter(|(_, w)| match w.target {
                    Target::Issue(i) => i == issue,
                    Target::Group(g) => g == a.group,
                    Target::Action(x) => x == ai,
                })
                .map(|(i, _)| i as u16)
                .collect();
        }
        Catalog {
            seed,
            issues,
            groups,
            actions,
            weights,
            channels,
        }
    }

    /// Mean conjuncts per action (its group's and its own).
    pub fn conjuncts_per_action(&self) -> f64 {
        let total: usize = self
            .actions
            .iter()
            .map(|a| a.all.len() + self.groups[a.group].all.len())
            .sum();
        total as f64 / self.actions.len() as f64
    }

    /// Distinct conjunct texts (what the engine should share).
    pub fn distinct_conjuncts(&self) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        let all = self
            .groups
            .iter()
            .flat_map(|g| g.policies.iter())
            .chain(self.actions.iter().flat_map(|a| a.policies.iter()))
            .flatten()
            .flat_map(|c| c.conjuncts.iter())
            .chain(self.weights.iter().flat_map(|w| w.when.conjuncts.iter()));
        for p in all {
            let mut s = String::new();
            p.render(&mut s);
            seen.insert(s);
        }
        seen.len()
    }

    /// The catalog as a rule directory in memory (1000 actions per file).
    pub fn to_source(&self) -> RuleSource {
        self.to_source_with(1000)
    }

    /// The catalog as a rule directory in memory, `per_file` actions per
    /// `actions/*.toml` file.
    pub fn to_source_with(&self, per_file: usize) -> RuleSource {
        self.render(per_file, false)
    }

    /// The catalog with the scripted strategy [`STRATEGY`] (all three
    /// hooks, and a derived `churn_risk` attribute in the schema).
    pub fn to_source_with_strategy(&self) -> RuleSource {
        self.render(1000, true)
    }

    fn render(&self, per_file: usize, scripted: bool) -> RuleSource {
        let mut main = String::new();
        let mut line = |s: &str| {
            main.push_str(s);
            main.push('\n');
        };
        line(&format!("name = \"bench_{}\"", self.actions.len()));
        line(&format!(
            "description = \"Generated benchmark catalog (seed {})\"",
            self.seed
        ));
        line("default_limit = 3");
        line("");
        line("[schema]");
        for a in Attr::ALL {
            let ty = match a.kind() {
                Kind::Int => "\"int\"".to_string(),
                Kind::Float => "\"float\"".to_string(),
                Kind::Bool => "\"bool\"".to_string(),
                Kind::Str(values) => {
                    format!("{{ type = \"string\", values = {} }}", quoted_list(values))
                }
                Kind::Set(_) => "\"string_set\"".to_string(),
            };
            line(&format!("{} = {ty}", a.name()));
        }
        if scripted {
            line("churn_risk = { type = \"float\", derived = true }");
        }
        line("");
        line("[channels]");
        for c in &self.channels {
            line(&format!(
                "{} = {{ direction = \"inbound\", limit = {} }}",
                c.name, c.limit
            ));
        }
        for i in &self.issues {
            line("");
            line(&format!("[issues.{}]", i.name));
            line(&format!("lever = {}", i.lever));
        }
        for g in &self.groups {
            line("");
            line(&format!("[groups.{}]", g.name));
            line(&format!("issue = \"{}\"", self.issues[g.issue].name));
            line(&format!("lever = {}", g.lever));
            for (stage, conds) in STAGES.iter().zip(&g.policies) {
                if !conds.is_empty() {
                    line(&format!("{stage} = {}", cond_list(conds)));
                }
            }
        }
        for w in &self.weights {
            line("");
            line("[[context_weights]]");
            line(&format!("when = '{}'", w.when.text));
            line(&match w.target {
                Target::Issue(i) => format!("issue = \"{}\"", self.issues[i].name),
                Target::Group(g) => format!("group = \"{}\"", self.groups[g].name),
                Target::Action(a) => format!("action = \"{}\"", self.actions[a].id),
            });
            line(&format!("boost = {}", w.boost));
        }

        if scripted {
            line("");
            line("[strategy]");
            line("script = \"strategies/bench.rhai\"");
            line("[strategy.limits]");
            // Far above what the hooks need even under valgrind, so that
            // the wall-clock budget never drops a hook in a benchmark.
            line("time_budget_us = 10000000");
        }

        let mut src = RuleSource::new().file("ruleset.toml", main);
        if scripted {
            src = src.file("strategies/bench.rhai", STRATEGY);
        }
        for (k, chunk) in self.actions.chunks(per_file.max(1)).enumerate() {
            let mut text = String::new();
            for a in chunk {
                text.push_str("[[actions]]\n");
                text.push_str(&format!("id = \"{}\"\n", a.id));
                text.push_str(&format!("group = \"{}\"\n", self.groups[a.group].name));
                let chans: Vec<&str> = self
                    .channels
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| a.channels & (1 << i) != 0)
                    .map(|(_, c)| c.name)
                    .collect();
                text.push_str(&format!("channels = {}\n", quoted_list(&chans)));
                text.push_str(&format!("value = {}\n", a.value.render()));
                text.push_str(&format!("starting_propensity = {:?}\n", a.propensity));
                if a.lever != 0.0 {
                    text.push_str(&format!("lever = {}\n", a.lever));
                }
                for (stage, conds) in STAGES.iter().zip(&a.policies) {
                    if !conds.is_empty() {
                        text.push_str(&format!("{stage} = {}\n", cond_list(conds)));
                    }
                }
                text.push_str(&format!("treatment = \"Offer {}\"\n\n", a.id));
            }
            src = src.file(format!("actions/a{k:02}.toml"), text);
        }
        src
    }

    /// Compile the catalog and serve it.
    pub fn engine(&self) -> Engine {
        match RuleSet::compile(&self.to_source()) {
            Ok(rules) => Engine::new(rules),
            Err(e) => panic!("generated catalog does not compile:\n{e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Predictive models

/// The 20-input model: every attribute of the generated schema but the
/// product set, in the kinds a scorecard uses.
#[allow(dead_code)] // benches/models.rs and icount.rs use it
pub const MODEL: &str = r#"description = "Benchmark: a logistic model of 20 inputs"
link = "logistic"
intercept = -2.0

[inputs.age]
coefficient = 0.01
[inputs.tenure_months]
coefficient = -0.02
[inputs.credit_score]
bins = [{ below = 580, points = 0.8 }, { below = 670, points = 0.3 }, { below = 740, points = 0.0 }, { points = -0.4 }]
[inputs.arrears_days]
coefficient = 0.03
[inputs.dependents]
coefficient = 0.05
[inputs.days_since_login]
bins = [{ below = 7, points = -0.5 }, { below = 30, points = 0.0 }, { points = 0.6 }]
[inputs.complaints_12m]
coefficient = 0.4
[inputs.income]
coefficient = -0.000004
[inputs.balance]
coefficient = -0.00001
[inputs.monthly_spend]
coefficient = 0.0005
[inputs.churn_score]
coefficient = 1.5
[inputs.clv]
coefficient = -0.0001
[inputs.vip]
points = { true = -0.6, false = 0.0 }
[inputs.has_mortgage]
points = { true = -0.3, false = 0.1 }
[inputs.digital_active]
points = { true = -0.2, false = 0.2 }
[inputs.marketing_opt_in]
points = { true = -0.1, false = 0.05 }
[inputs.segment]
points = { mass = 0.2, affluent = -0.1, gold = -0.2, platinum = -0.3 }
[inputs.region]
points = { north = 0.1, south = -0.1 }
[inputs.call_reason]
points = { cancellation = 1.2, complaint = 0.6 }
other = 0.0
[inputs.employment]
points = { student = 0.3, retired = -0.2 }
"#;

/// `source` with the model as attribute `nba_churn`.
#[allow(dead_code)] // benches/models.rs and icount.rs use it
pub fn with_model(source: RuleSource) -> RuleSource {
    let main = source
        .files()
        .find(|(p, _)| *p == std::path::Path::new("ruleset.toml"))
        .map(|(_, t)| t.to_string())
        .expect("a ruleset.toml");
    let main = main.replacen(
        "\n[channels]",
        "nba_churn = { type = \"float\", model = \"models/churn.toml\" }\n\n[channels]",
        1,
    );
    source
        .file("ruleset.toml", main)
        .file("models/churn.toml", MODEL)
}

/// The strategy of [`Catalog::to_source_with_strategy`]: `derive` scores
/// churn risk from the context, `adjust` raises the context weight of
/// retention offers by it, and `select` keeps at most one action per group.
pub const STRATEGY: &str = r#"
fn derive(customer) {
    let risk = 0.1 + 0.2 * customer.complaints_12m;
    if customer.call_reason == "cancellation" { risk += 0.4; }
    if customer.tenure_months < 12 { risk += 0.1; }
    #{ churn_risk: min(risk, 1.0) }
}
fn adjust(customer, candidate) {
    if candidate.issue == "retention" {
        candidate.context_weight *= 1.0 + customer.churn_risk;
    }
    candidate
}
fn select(customer, ranked) {
    let out = [];
    let groups = [];
    for c in ranked {
        if c.group in groups { continue; }
        groups.push(c.group);
        out.push(c);
    }
    out
}
"#;

fn quoted_list(items: &[&str]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", q.join(", "))
}

fn cond_list(conds: &[Condition]) -> String {
    let q: Vec<String> = conds.iter().map(|c| format!("'{}'", c.text)).collect();
    format!("[{}]", q.join(", "))
}

// ---------------------------------------------------------------------------
// Customers

/// A customer as a plain struct: fields, no maps.
#[derive(Debug, Clone)]
pub struct PlainCustomer {
    pub id: String,
    /// Index of the channel the customer is deciding on.
    pub channel: usize,
    pub age: i64,
    pub tenure_months: i64,
    pub credit_score: i64,
    pub arrears_days: i64,
    pub dependents: i64,
    pub days_since_login: i64,
    pub complaints_12m: i64,
    pub income: f64,
    pub balance: f64,
    pub monthly_spend: f64,
    pub churn_score: f64,
    pub clv: f64,
    pub vip: bool,
    pub has_mortgage: bool,
    pub digital_active: bool,
    pub marketing_opt_in: bool,
    pub segment: u8,
    pub region: u8,
    pub call_reason: u8,
    pub employment: u8,
    /// Bit k: owns `PRODUCTS[k]`.
    pub products: u32,
}

impl PlainCustomer {
    #[inline(always)]
    fn int(&self, a: Attr) -> i64 {
        match a {
            Attr::Age => self.age,
            Attr::TenureMonths => self.tenure_months,
            Attr::CreditScore => self.credit_score,
            Attr::ArrearsDays => self.arrears_days,
            Attr::Dependents => self.dependents,
            Attr::DaysSinceLogin => self.days_since_login,
            Attr::Complaints12m => self.complaints_12m,
            _ => 0,
        }
    }

    #[inline(always)]
    fn float(&self, a: Attr) -> f64 {
        match a {
            Attr::Income => self.income,
            Attr::Balance => self.balance,
            Attr::MonthlySpend => self.monthly_spend,
            Attr::ChurnScore => self.churn_score,
            Attr::Clv => self.clv,
            _ => 0.0,
        }
    }

    #[inline(always)]
    fn flag(&self, a: Attr) -> bool {
        match a {
            Attr::Vip => self.vip,
            Attr::HasMortgage => self.has_mortgage,
            Attr::DigitalActive => self.digital_active,
            Attr::MarketingOptIn => self.marketing_opt_in,
            _ => false,
        }
    }

    #[inline(always)]
    fn str(&self, a: Attr) -> u8 {
        match a {
            Attr::Segment => self.segment,
            Attr::Region => self.region,
            Attr::CallReason => self.call_reason,
            Attr::Employment => self.employment,
            _ => 0,
        }
    }

    fn product_names(&self) -> Vec<String> {
        PRODUCTS
            .iter()
            .enumerate()
            .filter(|(k, _)| self.products & (1 << k) != 0)
            .map(|(_, p)| p.to_string())
            .collect()
    }

    /// The customer's attributes as engine values, in schema order.
    pub fn values(&self) -> Vec<(&'static str, Value)> {
        Attr::ALL
            .iter()
            .map(|&a| {
                let v = match a.kind() {
                    Kind::Int => Value::Int(self.int(a)),
                    Kind::Float => Value::Float(self.float(a)),
                    Kind::Bool => Value::Bool(self.flag(a)),
                    Kind::Str(values) => Value::String(values[self.str(a) as usize].to_string()),
                    Kind::Set(_) => Value::StringSet(self.product_names()),
                };
                (a.name(), v)
            })
            .collect()
    }

    /// A typed engine context.
    pub fn context(&self, schema: &Arc<Schema>) -> Context {
        let mut b = Context::builder(schema);
        for (name, v) in self.values() {
            b = b.set(name, v);
        }
        b.build().expect("generated customer fits the schema")
    }

    /// A request on the customer's channel at [`NOW`].
    pub fn request(
        &self,
        catalog: &Catalog,
        schema: &Arc<Schema>,
        explain: bool,
    ) -> DecisionRequest {
        DecisionRequest::new(
            self.id.clone(),
            catalog.channels[self.channel].name,
            self.context(schema),
        )
        .explain(explain)
        .at(now())
    }

    /// The JSON request (the README's shape) for the customer.
    pub fn request_json(&self, catalog: &Catalog) -> String {
        let mut ctx = serde_json::Map::new();
        for (name, v) in self.values() {
            let j = match v {
                Value::Int(i) => serde_json::json!(i),
                Value::Float(f) => serde_json::json!(f),
                Value::Bool(b) => serde_json::json!(b),
                Value::String(s) => serde_json::json!(s),
                Value::StringSet(s) => serde_json::json!(s),
                other => panic!("unexpected value {other:?}"),
            };
            ctx.insert(name.to_string(), j);
        }
        serde_json::json!({
            "customer_id": self.id,
            "channel": catalog.channels[self.channel].name,
            "now": NOW,
            "context": ctx,
        })
        .to_string()
    }

    /// A rhai scope holding the customer's attributes.
    pub fn scope(&self) -> rhai::Scope<'static> {
        let mut scope = rhai::Scope::new();
        for (name, v) in self.values() {
            match v {
                Value::Int(i) => scope.push(name, i),
                Value::Float(f) => scope.push(name, f),
                Value::Bool(b) => scope.push(name, b),
                Value::String(s) => scope.push(name, rhai::ImmutableString::from(s)),
                Value::StringSet(items) => {
                    let arr: rhai::Array = items.into_iter().map(rhai::Dynamic::from).collect();
                    scope.push(name, arr)
                }
                other => panic!("unexpected value {other:?}"),
            };
        }
        scope
    }
}

fn round_to(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `n` customers with correlated attributes, the same for the same seed.
/// Customer `i` decides on the web when `i % 4 == 3`, else the call center.
pub fn population(n: usize, seed: u64) -> Vec<PlainCustomer> {
    let mut rng = SplitMix64::new(seed ^ 0x6375_7374_6f6d_6572);
    (0..n).map(|i| customer(&mut rng, i)).collect()
}

fn customer(rng: &mut SplitMix64, i: usize) -> PlainCustomer {
    let age = (18.0 + 62.0 * rng.unit().powf(1.2)).round() as i64;
    let employment = if age >= 66 {
        if rng.chance(0.9) {
            RETIRED
        } else {
            EMPLOYED
        }
    } else if age < 24 && rng.chance(0.5) {
        STUDENT
    } else {
        [EMPLOYED, SELF_EMPLOYED, UNEMPLOYED, STUDENT][rng.weighted(&[0.74, 0.15, 0.08, 0.03])]
    };
    let base = match employment {
        EMPLOYED => 36_000.0,
        SELF_EMPLOYED => 42_000.0,
        RETIRED => 24_000.0,
        STUDENT => 8_000.0,
        _ => 9_000.0,
    };
    let seniority = 1.0 + (age - 18).min(30) as f64 * 0.015;
    let income = round_to(
        (base * seniority * (0.45 * rng.normal()).exp()).clamp(0.0, 400_000.0),
        10.0,
    );
    let tenure_months = rng.below(((age - 18) * 12).min(360) as u64 + 1) as i64;
    let arrears_days = if rng.chance(if income > 50_000.0 { 0.93 } else { 0.85 }) {
        0
    } else {
        rng.pick(&[15, 30, 60, 90])
    };
    let credit_score = (560.0 + income / 1500.0 + tenure_months as f64 / 6.0
        - arrears_days as f64 * 1.5
        + 60.0 * rng.normal())
    .clamp(300.0, 850.0)
    .round() as i64;
    let balance = cents((income * 0.25 * (0.9 * rng.normal()).exp()).max(0.0));
    let segment = if income > 120_000.0 || balance > 100_000.0 {
        PLATINUM
    } else if income > 70_000.0 || balance > 40_000.0 {
        GOLD
    } else if income > 40_000.0 {
        AFFLUENT
    } else {
        MASS
    };
    let monthly_spend = cents(income / 12.0 * (0.3 + 0.6 * rng.unit()));
    let complaints_12m = rng.weighted(&[0.8, 0.12, 0.05, 0.03]) as i64;
    let digital_active = rng.chance(if age < 50 { 0.8 } else { 0.45 });
    let days_since_login = if digital_active {
        rng.below(15) as i64
    } else {
        15 + rng.below(350) as i64
    };
    let p_cancel = 0.08 + 0.1 * complaints_12m as f64;
    let p_complaint = 0.08 + 0.1 * complaints_12m as f64;
    let call_reason = rng.weighted(&[0.3, p_cancel, 0.25, p_complaint, 0.15]) as u8;
    let churn_score = cents(
        (0.15
            + 0.15 * complaints_12m as f64
            + if call_reason == CANCELLATION {
                0.35
            } else {
                0.0
            }
            - tenure_months as f64 / 720.0
            + 0.1 * rng.normal())
        .clamp(0.0, 1.0),
    );
    let clv = cents(balance * 0.05 + income * 0.02 + tenure_months as f64 * 8.0);
    let vip = (segment == PLATINUM && rng.chance(0.7)) || (clv > 8_000.0 && rng.chance(0.3));
    let has_mortgage = (28..=62).contains(&age) && income > 30_000.0 && rng.chance(0.45);
    let marketing_opt_in = rng.chance(0.7);
    let dependents = if (28..=55).contains(&age) {
        rng.below(4) as i64
    } else {
        rng.below(2) as i64
    };
    let region = rng.below(REGIONS.len() as u64) as u8;
    let mut products = 0u32;
    if rng.chance(0.92) {
        products |= 1;
    }
    let p_product = 0.04 + 0.05 * segment as f64 + tenure_months as f64 / 1500.0;
    for k in 1..PRODUCTS.len() {
        if rng.chance(p_product) {
            products |= 1 << k;
        }
    }
    if has_mortgage {
        products |= 1 << MORTGAGE_PRODUCT;
    }
    PlainCustomer {
        id: format!("C{i:06}"),
        channel: usize::from(i % 4 == 3),
        age,
        tenure_months,
        credit_score,
        arrears_days,
        dependents,
        days_since_login,
        complaints_12m,
        income,
        balance,
        monthly_spend,
        churn_score,
        clv,
        vip,
        has_mortgage,
        digital_active,
        marketing_opt_in,
        segment,
        region,
        call_reason,
        employment: employment as u8,
        products,
    }
}

// ---------------------------------------------------------------------------
// The floor: a hand-written decision over plain data

/// Keep the best `limit` candidates: priority descending, then action
/// index (= id order) ascending.
#[inline]
fn offer(top: &mut Vec<(u32, f64)>, limit: usize, cand: (u32, f64)) {
    let before = |a: &(u32, f64), b: &(u32, f64)| match a.1.total_cmp(&b.1) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => a.0 < b.0,
    };
    if top.len() == limit {
        match top.last() {
            Some(last) if before(&cand, last) => {
                top.pop();
            }
            _ => return,
        }
    }
    let mut i = top.len();
    while i > 0 && before(&cand, &top[i - 1]) {
        i -= 1;
    }
    top.insert(i, cand);
}

/// The same eligibility (every conjunct of the group and the action) and
/// ranking (P × C × V × L, top `limit`) as the engine, written by hand over
/// a plain struct, on the customer's channel with its limit. Returns
/// (action index, priority), best first.
pub fn floor_decide(model: &Catalog, c: &PlainCustomer) -> Vec<(u32, f64)> {
    let limit = model.channels[c.channel].limit;
    let bit = 1u8 << c.channel;
    let mut top = Vec::with_capacity(limit);
    // Context weights, evaluated at most once each.
    let (mut known, mut met) = (0u64, 0u64);
    for g in &model.groups {
        if !g.all.iter().all(|p| p.holds(c)) {
            continue;
        }
        for ai in g.actions.clone() {
            let a = &model.actions[ai];
            if a.channels & bit == 0 || !a.all.iter().all(|p| p.holds(c)) {
                continue;
            }
            let value = a.value.eval(c);
            let mut boost = 0.0;
            for &w in &a.weights {
                let m = 1u64 << w;
                if known & m == 0 {
                    known |= m;
                    if model.weights[w as usize].when.holds(c) {
                        met |= m;
                    }
                }
                if met & m != 0 {
                    boost += model.weights[w as usize].boost;
                }
            }
            let context_weight = (1.0 + boost / 100.0).max(0.0);
            let priority = a.propensity * context_weight * value * a.total_lever;
            offer(&mut top, limit, (ai as u32, priority));
        }
    }
    top
}

// ---------------------------------------------------------------------------
// The naive engine: rhai over the same condition strings

struct RhaiGroup {
    conds: Vec<rhai::AST>,
}

struct RhaiAction {
    conds: Vec<rhai::AST>,
    value: Option<rhai::AST>,
}

/// Each condition string compiled once as a rhai AST, evaluated per
/// decision against a [`rhai::Scope`] holding the customer.
pub struct RhaiNaive {
    engine: rhai::Engine,
    groups: Vec<RhaiGroup>,
    actions: Vec<RhaiAction>,
    weights: Vec<rhai::AST>,
}

impl RhaiNaive {
    pub fn new(model: &Catalog) -> RhaiNaive {
        use rhai::packages::{BasicArrayPackage, LanguageCorePackage, LogicPackage, Package};
        let mut engine = rhai::Engine::new_raw();
        LanguageCorePackage::new().register_into_engine(&mut engine);
        LogicPackage::new().register_into_engine(&mut engine);
        BasicArrayPackage::new().register_into_engine(&mut engine);
        let compile = |engine: &rhai::Engine, text: &str| {
            engine
                .compile_expression(text)
                .unwrap_or_else(|e| panic!("rhai cannot compile `{text}`: {e}"))
        };
        let conds = |engine: &rhai::Engine, p: &[Vec<Condition>; 3]| -> Vec<rhai::AST> {
            p.iter()
                .flatten()
                .map(|c| compile(engine, &c.text))
                .collect()
        };
        let groups = model
            .groups
            .iter()
            .map(|g| RhaiGroup {
                conds: conds(&engine, &g.policies),
            })
            .collect();
        let actions = model
            .actions
            .iter()
            .map(|a| RhaiAction {
                conds: conds(&engine, &a.policies),
                value: match a.value {
                    ValueModel::Const(_) => None,
                    ValueModel::Linear(..) => {
                        let text = a.value.render();
                        Some(compile(&engine, text.trim_matches('"')))
                    }
                },
            })
            .collect();
        let weights = model
            .weights
            .iter()
            .map(|w| compile(&engine, &w.when.text))
            .collect();
        RhaiNaive {
            engine,
            groups,
            actions,
            weights,
        }
    }

    fn holds(&self, scope: &mut rhai::Scope<'static>, ast: &rhai::AST) -> bool {
        self.engine
            .eval_ast_with_scope::<bool>(scope, ast)
            .unwrap_or_else(|e| panic!("rhai evaluation failed: {e}"))
    }

    /// Decide like [`floor_decide`], with every condition evaluated by rhai.
    pub fn decide(
        &self,
        model: &Catalog,
        scope: &mut rhai::Scope<'static>,
        channel: usize,
        limit: usize,
    ) -> Vec<(u32, f64)> {
        let bit = 1u8 << channel;
        let mut top = Vec::with_capacity(limit);
        let mut weight_memo: Vec<Option<bool>> = vec![None; self.weights.len()];
        for (g, rg) in model.groups.iter().zip(&self.groups) {
            if !rg.conds.iter().all(|ast| self.holds(scope, ast)) {
                continue;
            }
            for ai in g.actions.clone() {
                let (a, ra) = (&model.actions[ai], &self.actions[ai]);
                if a.channels & bit == 0 || !ra.conds.iter().all(|ast| self.holds(scope, ast)) {
                    continue;
                }
                let value = match (&ra.value, a.value) {
                    (Some(ast), _) => self
                        .engine
                        .eval_ast_with_scope::<f64>(scope, ast)
                        .unwrap_or_else(|e| panic!("rhai value failed: {e}")),
                    (None, ValueModel::Const(v)) => v,
                    (None, _) => unreachable!("value expressions are compiled"),
                };
                let mut boost = 0.0;
                for &w in &a.weights {
                    let w = w as usize;
                    let met = match weight_memo[w] {
                        Some(m) => m,
                        None => {
                            let m = self.holds(scope, &self.weights[w]);
                            weight_memo[w] = Some(m);
                            m
                        }
                    };
                    if met {
                        boost += model.weights[w].boost;
                    }
                }
                let context_weight = (1.0 + boost / 100.0).max(0.0);
                let priority = a.propensity * context_weight * value * a.total_lever;
                offer(&mut top, limit, (ai as u32, priority));
            }
        }
        top
    }
}

// ---------------------------------------------------------------------------
// Correctness checks (run in bench setup, before anything is timed)

/// The engine's choice as (action index, priority).
pub fn engine_choice(engine: &Engine, req: &DecisionRequest) -> Vec<(u32, f64)> {
    let d = engine
        .decide(req)
        .unwrap_or_else(|e| panic!("decide failed: {e}"));
    d.actions()
        .map(|a| {
            let idx: u32 = a.action()[1..].parse().expect("generated ids are A<index>");
            (idx, a.priority())
        })
        .collect()
}

fn same_choice(a: &[(u32, f64)], b: &[(u32, f64)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.0 == y.0 && (x.1 - y.1).abs() <= 1e-12 * x.1.abs().max(y.1.abs()).max(1.0)
        })
}

/// What a check saw: how many decisions, how many chose nothing, how many
/// actions survived the policies on average.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckStats {
    pub decisions: usize,
    pub empty: usize,
    pub mean_chosen: f64,
    pub mean_eligible: f64,
    pub mean_offered: f64,
}

/// Assert the engine chooses exactly what [`floor_decide`] chooses for every
/// customer (and the same with explain on, whose ranked list must be every
/// survivor). Panics on the first difference.
pub fn check_floor(model: &Catalog, engine: &Engine, customers: &[PlainCustomer]) -> CheckStats {
    let schema = engine.schema();
    let mut st = CheckStats::default();
    let (mut chosen, mut eligible, mut offered) = (0usize, 0usize, 0usize);
    for c in customers {
        let floor = floor_decide(model, c);
        let req = c.request(model, &schema, false);
        let ours = engine_choice(engine, &req);
        assert!(
            same_choice(&ours, &floor),
            "engine and floor disagree for {} on {} ({} actions):\n engine {ours:?}\n floor  {floor:?}\n customer {c:?}",
            c.id,
            model.channels[c.channel].name,
            model.actions.len(),
        );
        let explained = engine
            .decide(&c.request(model, &schema, true))
            .unwrap_or_else(|e| panic!("decide failed: {e}"));
        let with_explain: Vec<(u32, f64)> = explained
            .actions()
            .map(|a| (a.action()[1..].parse().unwrap(), a.priority()))
            .collect();
        assert!(
            same_choice(&with_explain, &floor),
            "explain changes the choice for {}",
            c.id
        );
        let bit = 1u8 << c.channel;
        let on_channel = model
            .actions
            .iter()
            .filter(|a| a.channels & bit != 0)
            .count();
        assert_eq!(
            explained.ranked().len() + explained.filtered().len(),
            on_channel,
            "explain must account for every action on the channel"
        );
        st.decisions += 1;
        st.empty += usize::from(floor.is_empty());
        chosen += floor.len();
        eligible += explained.ranked().len();
        offered += on_channel;
    }
    let n = st.decisions.max(1) as f64;
    st.mean_chosen = chosen as f64 / n;
    st.mean_eligible = eligible as f64 / n;
    st.mean_offered = offered as f64 / n;
    st
}

/// Assert the rhai engine chooses exactly what the floor chooses.
pub fn check_rhai(
    model: &Catalog,
    naive: &RhaiNaive,
    customers: &[PlainCustomer],
    scopes: &mut [rhai::Scope<'static>],
) {
    for (c, scope) in customers.iter().zip(scopes.iter_mut()) {
        let limit = model.channels[c.channel].limit;
        let floor = floor_decide(model, c);
        let naive = naive.decide(model, scope, c.channel, limit);
        assert!(
            same_choice(&naive, &floor),
            "rhai and floor disagree for {}:\n rhai  {naive:?}\n floor {floor:?}",
            c.id
        );
    }
}

/// A shipped rule set and its population as requests on its first inbound
/// channel (call_center when it has one), or why it cannot be benchmarked.
pub fn shipped(dir: &std::path::Path) -> Result<(Engine, Vec<DecisionRequest>), String> {
    shipped_with(dir, |main| main)
}

/// [`shipped`], with `edit` applied to the rule set's `ruleset.toml` first.
pub fn shipped_with(
    dir: &std::path::Path,
    edit: impl FnOnce(String) -> String,
) -> Result<(Engine, Vec<DecisionRequest>), String> {
    let name = dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let customers = dir.join("customers.jsonl");
    let text =
        std::fs::read_to_string(&customers).map_err(|e| format!("{}: {e}", customers.display()))?;
    let source = RuleSource::from_dir(dir).map_err(|e| format!("does not load: {e}"))?;
    let main = edit(main_file(&source));
    let rules = RuleSet::compile(&source.file("ruleset.toml", main))
        .map_err(|e| format!("does not compile: {e}"))?;
    let channel = rules
        .channel_names()
        .find(|c| *c == "call_center")
        .or(rules.channel_names().next())
        .ok_or("no channels")?
        .to_string();
    let engine = Engine::new(rules);
    let schema = engine.schema();
    let mut requests = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("customers.jsonl:{}: {e}", i + 1))?;
        let obj = v
            .as_object_mut()
            .ok_or(format!("customers.jsonl:{}: not an object", i + 1))?;
        obj.entry("channel")
            .or_insert_with(|| channel.clone().into());
        obj.insert("now".into(), NOW.into());
        let line = v.to_string();
        let req = DecisionRequest::from_json(&schema, &line)
            .map_err(|e| format!("customers.jsonl:{}: {e}", i + 1))?;
        engine
            .decide(&req)
            .map_err(|e| format!("customers.jsonl:{}: {e}", i + 1))?;
        requests.push(req);
    }
    if requests.is_empty() {
        return Err("customers.jsonl is empty".into());
    }
    eprintln!(
        "decide/rules/{name}: {} actions, {} customers, on their own channels (default {channel})",
        engine.current().rules().action_ids().count(),
        requests.len()
    );
    Ok((engine, requests))
}

/// A rule set's `ruleset.toml` without its strategy: the `[strategy]`
/// tables removed and the derived attributes declared plain (the decisions
/// then run the policies with those attributes missing).
pub fn without_strategy(main: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in main.lines() {
        if line.starts_with('[') {
            skipping = line.starts_with("[strategy");
        }
        if !skipping {
            out.push_str(&line.replace("derived = true", "derived = false"));
            out.push('\n');
        }
    }
    out
}

/// The text of `source`'s `ruleset.toml` (empty if it has none).
pub fn main_file(source: &RuleSource) -> String {
    source
        .files()
        .find(|(p, _)| *p == std::path::Path::new("ruleset.toml"))
        .map(|(_, t)| t.to_string())
        .unwrap_or_default()
}

/// Read every entry of an explanation: each removed action's id, stage,
/// level, condition and reason, each ranked action's id and scores.
pub fn read_explanation(d: &nextbest::Decision) -> usize {
    let mut sum = 0usize;
    for f in d.filtered() {
        sum += f.action().len() + f.stage().as_str().len() + f.level().as_str().len();
        sum += f.condition().map_or(0, str::len);
        sum += f.reason().map_or(0, |r| r.len());
    }
    for r in d.ranked() {
        sum += r.action().len();
        sum +=
            (r.propensity() * r.context_weight() * r.value() * r.lever() * r.priority()) as usize;
    }
    sum
}

/// Where criterion keeps its estimates (as criterion itself decides).
#[allow(dead_code)] // benches/decide.rs, models.rs and learning.rs use it
pub fn criterion_dir() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return std::path::PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// The median (ns) of a benchmark, if it was measured in this run.
#[allow(dead_code)] // benches/decide.rs, models.rs and learning.rs use it
pub fn median(id: &str, since: std::time::SystemTime) -> Option<f64> {
    let path = criterion_dir().join(id).join("new").join("estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}
