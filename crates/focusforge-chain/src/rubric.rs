//! The usefulness rubric: what an answer must be for a person to keep it,
//! beyond being valid JSON. Each chain holds its answers to it (a failed
//! rule sends the model one repair request, then the fallback answers), and
//! the bench reports how often each backend passes it.
//!
//! A breakdown passes when its block count fits the granularity; its block
//! titles are distinct actions (an imperative verb first, at most 90
//! characters) that neither restate the task nor contain it whole; it has
//! no markup, links, or dates, numbers or names the task and the user's
//! context do not have; each block takes 5-120 minutes and the total is
//! near the user's estimate; every block says how to tell it is done; and
//! the steps are about the task: its subject appears in one of them, and
//! each shares a word with the task, the examples of its kind of work or
//! the user's similar past tasks.

use std::collections::HashSet;
use std::fmt;

use crate::chains::{Analysis, Breakdown, Motivation, ProofCheck, Ritual, TaskInput, bounds};
use crate::context::{Progress, UserContext};
use crate::text::{content_stems, first_word, is_verb, stem_set, subject, words};

/// The longest block title the rubric keeps.
pub const TITLE_MAX: usize = 90;

/// A rule an answer broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The rule's name: `count`, `action`, `distinct`, `restates_task`,
    /// `markup`, `invented`, `unfinished`, `minutes`, `estimate`,
    /// `done_when`, `subject`,
    /// `off_topic`, `progress`, `quotes_proof`, or `schema` for an answer
    /// that does not parse.
    pub rule: &'static str,
    pub detail: String,
    /// The block of a breakdown that broke it, when one did.
    pub block: Option<usize>,
}

impl Failure {
    pub fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        Self {
            rule,
            detail: detail.into(),
            block: None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

type Check = std::result::Result<(), Failure>;

/// What an answer may rest on: the task, the user's context, and the
/// examples of the task's kind of work it was given.
#[derive(Debug, Clone)]
pub struct Grounds {
    /// Lowercase words of the task and the context: facts may come from here.
    known: HashSet<String>,
    task_words: Vec<String>,
    task_title: String,
    subject: HashSet<String>,
    /// Stems a step about the task shares at least one of.
    topic: HashSet<String>,
    estimate: u32,
    available: u32,
}

impl Grounds {
    /// `examples` are texts of the task's kind of work (the library's
    /// nearest examples), widening what counts as on topic.
    pub fn new(task: &TaskInput, context: &UserContext, examples: &[String]) -> Self {
        let task_text = format!("{} {}", task.title, task.description);
        let mut known: HashSet<String> = words(&task_text).into_iter().collect();
        let lines = context.lines().join(" ");
        known.extend(words(&lines));
        let mut topic = stem_set(&task_text);
        for s in &context.similar_tasks {
            topic.extend(stem_set(&s.task.title));
            for (b, _) in &s.task.blocks {
                topic.extend(stem_set(b));
            }
        }
        for e in examples {
            topic.extend(stem_set(e));
        }
        Self {
            known,
            task_words: words(&task.title),
            task_title: task.title.trim().to_owned(),
            subject: stem_set(&subject(&task.title)),
            topic,
            estimate: task.estimated_minutes,
            available: task.available_minutes,
        }
    }

    /// How many distinct stems of `text` are on the task's topic.
    pub fn topic_overlap(&self, text: &str) -> usize {
        stem_set(text).intersection(&self.topic).count()
    }

    fn on_topic(&self, text: &str) -> bool {
        content_stems(text).iter().any(|s| self.topic.contains(s))
    }

    fn names_subject(&self, text: &str) -> bool {
        content_stems(text).iter().any(|s| self.subject.contains(s))
    }

    /// Whether `text` contains the task's title whole (for titles of two
    /// words or more) or is it.
    fn restates(&self, text: &str) -> bool {
        let said = words(text);
        if said == self.task_words {
            return true;
        }
        self.task_words.len() >= 2
            && said
                .windows(self.task_words.len())
                .any(|w| w == self.task_words.as_slice())
    }

    /// Markup, links, or a date, number or name the grounds do not have.
    fn facts(&self, text: &str) -> Check {
        if let Some(m) = markup(text) {
            return Err(Failure::new("markup", format!("{text:?} contains {m:?}")));
        }
        for w in words(text) {
            if w.chars().any(|c| c.is_ascii_digit()) && !self.known.contains(&w) {
                return Err(Failure::new(
                    "invented",
                    format!("{text:?} states {w:?}, which the task does not"),
                ));
            }
            if CALENDAR.contains(&w.as_str()) && !self.known.contains(&w) {
                return Err(Failure::new(
                    "invented",
                    format!("{text:?} names the date {w:?}, which the task does not"),
                ));
            }
        }
        // A capitalised word inside a sentence is a name.
        let mut sentence_start = true;
        for raw in text.split_whitespace() {
            let w = raw.trim_matches(|c: char| !c.is_alphanumeric());
            let capital = w.chars().next().is_some_and(char::is_uppercase);
            let pronoun = w == "I" || w.starts_with("I'");
            if capital && !sentence_start && !pronoun && !self.known.contains(&w.to_lowercase()) {
                return Err(Failure::new(
                    "invented",
                    format!("{text:?} names {w:?}, which the task does not"),
                ));
            }
            sentence_start = raw.ends_with(['.', '!', '?', ':']);
        }
        Ok(())
    }
}

const CALENDAR: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "tomorrow",
    "yesterday",
];

/// The markup or link in `text`, if any.
pub fn markup(text: &str) -> Option<&'static str> {
    const SIGNS: &[&str] = &[
        "</", "/>", "<", ">", "**", "__", "`", "#", "[", "]", "{", "}", "|", "\\", "http:",
        "https:", "www.", "://",
    ];
    let lower = text.to_lowercase();
    SIGNS.iter().copied().find(|s| lower.contains(s))
}

/// Words a finished phrase does not end with.
const DANGLING: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "then", "to", "of", "your", "my", "our", "its", "their",
    "are", "so", "as", "if", "while", "until", "into", "than", "very",
];

/// Whether `text` stops mid-phrase: on a word that needs another after it,
/// a comma or a hyphen, or an ellipsis.
pub fn unfinished(text: &str) -> bool {
    let t = text.trim();
    if t.ends_with([',', '-', ':', '…', '(']) || t.ends_with("...") {
        return true;
    }
    words(t)
        .last()
        .is_some_and(|w| DANGLING.contains(&w.as_str()))
}

/// Whether `text` starts with an imperative verb of [`crate::text::VERBS`].
pub fn is_action(text: &str) -> bool {
    let w = first_word(text).trim_end_matches([',', ':', ';']);
    w.chars().next().is_some_and(char::is_uppercase) && is_verb(w)
}

fn normalised(text: &str) -> String {
    words(text).join(" ")
}

/// Holds a breakdown to the rubric.
pub fn breakdown(out: &Breakdown, granularity: u8, grounds: &Grounds) -> Check {
    let (min, max, _, _) = bounds(granularity);
    let n = out.blocks.len();
    if !(min..=max).contains(&n) {
        return Err(Failure::new(
            "count",
            format!("{n} blocks; granularity {granularity} takes {min} to {max}"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, b) in out.blocks.iter().enumerate() {
        block(i, b, &mut seen, grounds).map_err(|f| Failure {
            block: Some(i),
            ..f
        })?;
    }
    let total = out.total_minutes();
    if grounds.estimate > 0 {
        let slack = (grounds.estimate / 4).max(15);
        if total.abs_diff(grounds.estimate) > slack {
            return Err(Failure::new(
                "estimate",
                format!(
                    "the blocks take {total} minutes; the estimate is {}",
                    grounds.estimate
                ),
            ));
        }
    }
    if grounds.available > 0 && total > grounds.available + grounds.available / 5 {
        return Err(Failure::new(
            "estimate",
            format!(
                "the blocks take {total} minutes, more than the {} available",
                grounds.available
            ),
        ));
    }
    if !grounds.subject.is_empty()
        && !out
            .blocks
            .iter()
            .any(|b| grounds.names_subject(&format!("{} {}", b.title, b.done_when)))
    {
        return Err(Failure::new(
            "subject",
            format!("no block names what {:?} is about", grounds.task_title),
        ));
    }
    Ok(())
}

/// The rules each block of a breakdown is held to.
fn block(
    i: usize,
    b: &crate::chains::Block,
    seen: &mut HashSet<String>,
    grounds: &Grounds,
) -> Check {
    let at = format!("blocks[{i}]");
    if b.title.chars().count() > TITLE_MAX {
        return Err(Failure::new(
            "action",
            format!("{at}.title is longer than {TITLE_MAX} characters"),
        ));
    }
    if !is_action(&b.title) {
        return Err(Failure::new(
            "action",
            format!("{at}.title {:?} does not start with a verb", b.title),
        ));
    }
    if !seen.insert(normalised(&b.title)) {
        return Err(Failure::new(
            "distinct",
            format!("{at}.title {:?} repeats another block", b.title),
        ));
    }
    // A step is an instruction to the user, not the writer's own plan.
    if words(&b.title)
        .iter()
        .any(|w| ["i", "i'll", "i'm", "i've", "we", "we'll", "me"].contains(&w.as_str()))
    {
        return Err(Failure::new(
            "action",
            format!("{at}.title {:?} speaks for the writer", b.title),
        ));
    }
    if grounds.restates(&b.title) {
        return Err(Failure::new(
            "restates_task",
            format!(
                "{at}.title {:?} restates the task {:?}",
                b.title, grounds.task_title
            ),
        ));
    }
    grounds.facts(&b.title)?;
    grounds.facts(&b.done_when)?;
    for (field, text) in [("title", &b.title), ("done_when", &b.done_when)] {
        if unfinished(text) {
            return Err(Failure::new(
                "unfinished",
                format!("{at}.{field} {text:?} stops mid-phrase"),
            ));
        }
    }
    if !(5..=120).contains(&b.minutes) {
        return Err(Failure::new(
            "minutes",
            format!("{at} takes {} minutes, not 5 to 120", b.minutes),
        ));
    }
    done_when(&b.title, &b.done_when)
        .map_err(|d| Failure::new("done_when", format!("{at}: {d}")))?;
    if !grounds.on_topic(&format!("{} {}", b.title, b.done_when)) {
        return Err(Failure::new(
            "off_topic",
            format!("{at}.title {:?} is not about the task", b.title),
        ));
    }
    Ok(())
}

/// A "done when" says something the title does not: how to tell.
fn done_when(title: &str, done: &str) -> std::result::Result<(), String> {
    if words(done).len() < 3 {
        return Err(format!("done_when {done:?} does not say how to tell"));
    }
    if normalised(done) == normalised(title) {
        return Err("done_when repeats the title".into());
    }
    // Talk about the plan or the writer is not a check of the result.
    const META: &[&str] = &[
        "this task",
        "the task is",
        "first step is",
        "next step is",
        "i",
        "i'm",
        "i'll",
        "i've",
        "we'll",
        "going to",
        "will take",
        "not yet",
        "not finished",
    ];
    let said = format!(" {} ", normalised(done));
    if let Some(m) = META.iter().find(|m| said.contains(&format!(" {m} "))) {
        return Err(format!(
            "done_when {done:?} talks about the plan ({m:?}), not the result"
        ));
    }
    // A check, not a caveat.
    if done.to_lowercase().contains(", but ") {
        return Err(format!("done_when {done:?} hedges with \"but\""));
    }
    // Words that say nothing about how to tell.
    const EMPTY: &[&str] = &[
        "the",
        "a",
        "an",
        "is",
        "are",
        "be",
        "been",
        "it",
        "its",
        "done",
        "finished",
        "complete",
        "completed",
        "ready",
        "all",
        "has",
        "have",
        "and",
        "of",
        "to",
        "now",
        "was",
        "were",
    ];
    let title_stems: HashSet<String> = words(title).iter().map(|w| crate::text::stem(w)).collect();
    let adds = words(done)
        .iter()
        .filter(|w| !EMPTY.contains(&w.as_str()))
        .any(|w| !title_stems.contains(&crate::text::stem(w)));
    if !adds {
        return Err(format!(
            "done_when {done:?} only restates the title {title:?}"
        ));
    }
    Ok(())
}

/// Words a risk may be about without naming the task.
const RISK_WORDS: &[&str] = &[
    "time",
    "deadline",
    "late",
    "delay",
    "interrupt",
    "distract",
    "scope",
    "miss",
    "forget",
    "cost",
    "budget",
    "error",
    "mistake",
    "wrong",
    "lost",
    "lose",
    "stuck",
    "block",
    "depend",
    "wait",
    "tired",
    "energy",
    "overrun",
    "underestim",
    "unclear",
    "approval",
    "access",
    "data",
    "weather",
    "price",
    "availab",
    "notif",
    "focus",
    "procrastin",
    "perfection",
    "fatigue",
    "break",
    "health",
    "injur",
];

fn about_risk(text: &str, grounds: &Grounds) -> bool {
    grounds.on_topic(text)
        || words(text)
            .iter()
            .any(|w| RISK_WORDS.iter().any(|r| w.starts_with(r)))
}

/// Holds an analysis to the rubric: skills are short names, risks are
/// risks (not instructions) about the task, the first step is an action on
/// the task, and nothing is invented.
pub fn analysis(out: &Analysis, grounds: &Grounds) -> Check {
    let mut seen = HashSet::new();
    for (i, s) in out.skills.iter().enumerate() {
        if words(s).len() > 4 || s.is_empty() {
            return Err(Failure::new(
                "skills",
                format!("skills[{i}] {s:?} is not a short skill name"),
            ));
        }
        if grounds.restates(s) || !seen.insert(s.to_lowercase()) {
            return Err(Failure::new(
                "distinct",
                format!("skills[{i}] {s:?} repeats the task or another skill"),
            ));
        }
        grounds.facts(s)?;
    }
    for (i, r) in out.risks.iter().enumerate() {
        if words(r).len() < 3 {
            return Err(Failure::new(
                "risks",
                format!("risks[{i}] {r:?} does not say what could go wrong"),
            ));
        }
        if is_verb(first_word(r)) {
            return Err(Failure::new(
                "risks",
                format!("risks[{i}] {r:?} is an instruction, not a risk"),
            ));
        }
        if !about_risk(r, grounds) {
            return Err(Failure::new(
                "off_topic",
                format!("risks[{i}] {r:?} is not about the task"),
            ));
        }
        grounds.facts(r)?;
    }
    if !is_action(&out.first_step) || grounds.restates(&out.first_step) {
        return Err(Failure::new(
            "action",
            format!(
                "first_step {:?} is not a concrete action on the task",
                out.first_step
            ),
        ));
    }
    if !grounds.on_topic(&out.first_step) {
        return Err(Failure::new(
            "off_topic",
            format!("first_step {:?} is not about the task", out.first_step),
        ));
    }
    grounds.facts(&out.first_step)?;
    if grounds.estimate > 0 && out.estimated_minutes.abs_diff(grounds.estimate) > grounds.estimate {
        return Err(Failure::new(
            "estimate",
            format!(
                "estimated_minutes {} is far from the user's estimate of {}",
                out.estimated_minutes, grounds.estimate
            ),
        ));
    }
    Ok(())
}

/// Holds a motivating message to the rubric: it names the user's progress
/// when there is some, and only the figures the user has.
pub fn motivation(out: &Motivation, progress: Progress) -> Check {
    let said = words(&out.message);
    let has = |keys: &[&str]| said.iter().any(|w| keys.iter().any(|k| w.starts_with(k)));
    if progress.streak_days >= 2 && !has(&["streak", "row", "days", "running", "straight"]) {
        return Err(Failure::new(
            "progress",
            format!(
                "the message does not mention the streak of {} days",
                progress.streak_days
            ),
        ));
    }
    if progress.completed_today >= 1
        && progress.streak_days < 2
        && !has(&["today", "done", "finished", "complet", "already", "another"])
    {
        return Err(Failure::new(
            "progress",
            "the message does not mention what was done today",
        ));
    }
    Ok(())
}

/// Holds a ritual to the rubric: distinct steps, each an action, with
/// nothing invented.
pub fn ritual(out: &Ritual, grounds: &Grounds) -> Check {
    let mut seen = HashSet::new();
    for (i, s) in out.steps.iter().enumerate() {
        if !is_action(s) {
            return Err(Failure::new(
                "action",
                format!("steps[{i}] {s:?} does not start with a verb"),
            ));
        }
        if !seen.insert(normalised(s)) {
            return Err(Failure::new(
                "distinct",
                format!("steps[{i}] {s:?} repeats another step"),
            ));
        }
        if let Some(m) = markup(s) {
            return Err(Failure::new(
                "markup",
                format!("steps[{i}] {s:?} contains {m:?}"),
            ));
        }
    }
    grounds.facts(&out.title)?;
    Ok(())
}

/// Holds a proof verdict to the rubric: a reason quotes the proof.
pub fn proof(out: &ProofCheck, proof: &str) -> Check {
    let proof_words: HashSet<String> = words(proof).into_iter().collect();
    let quotes = out.reasons.iter().any(|r| {
        words(r)
            .iter()
            .any(|w| proof_words.contains(w) && w.len() >= 3)
            || r.contains('"')
    });
    if !quotes && !proof_words.is_empty() {
        return Err(Failure::new(
            "quotes_proof",
            "no reason refers to what the proof says",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chains::Block;

    fn task(title: &str) -> TaskInput {
        TaskInput {
            title: title.into(),
            ..TaskInput::default()
        }
    }

    fn plan(blocks: &[(&str, u32, &str)]) -> Breakdown {
        Breakdown {
            blocks: blocks
                .iter()
                .map(|(t, m, d)| Block {
                    title: (*t).into(),
                    minutes: *m,
                    done_when: (*d).into(),
                })
                .collect(),
        }
    }

    /// Grounds as a chain has them: with the library's nearest examples.
    fn grounds_of(t: &TaskInput) -> Grounds {
        let examples = futures_lite(crate::library::Library::new(None).nearest(t, 2));
        let texts: Vec<String> = examples.iter().map(|(_, e)| e.text()).collect();
        Grounds::new(t, &UserContext::default(), &texts)
    }

    fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn rule(out: &Breakdown, title: &str) -> Option<&'static str> {
        breakdown(out, 3, &grounds_of(&task(title)))
            .err()
            .map(|f| f.rule)
    }

    #[test]
    fn the_answers_of_the_report_fail_and_a_good_breakdown_passes() {
        let same = plan(&[
            (
                "Plan the team offsite in Lisbon",
                20,
                "The plan is written down",
            ),
            (
                "Plan the team offsite in Lisbon",
                20,
                "The plan is written down",
            ),
            (
                "Plan the team offsite in Lisbon",
                20,
                "The plan is written down",
            ),
        ]);
        assert_eq!(
            rule(&same, "Plan the team offsite in Lisbon"),
            Some("restates_task")
        );
        let twice = plan(&[
            (
                "Book the venue for the offsite",
                20,
                "The venue confirmed the booking",
            ),
            (
                "Book the venue for the offsite",
                20,
                "The venue confirmed the booking",
            ),
            (
                "Send the offsite agenda to the team",
                15,
                "Everyone has the agenda",
            ),
        ]);
        assert_eq!(
            rule(&twice, "Plan the team offsite in Lisbon"),
            Some("distinct")
        );
        let garage = plan(&[
            ("Clean the garage", 20, "The garage floor is swept"),
            (
                "Remove old furniture from the house",
                20,
                "The house is empty of it",
            ),
            (
                "Wash car with soap and water",
                20,
                "The car shines all over",
            ),
        ]);
        assert_eq!(rule(&garage, "Clean the garage"), Some("restates_task"));
        let off = plan(&[
            ("Sweep the garage floor", 20, "No dust is left on the floor"),
            (
                "Wash car with soap and water",
                20,
                "The car shines all over",
            ),
            (
                "Sort the garage shelves",
                20,
                "Each shelf holds one kind of thing",
            ),
        ]);
        assert_eq!(rule(&off, "Clean the garage"), Some("off_topic"));
        let report = plan(&[
            (
                "The quarterly report is ready to be delivered by tomorrow at 1 pm",
                25,
                "It is sent",
            ),
            ("Draft the report", 25, "All sections are written"),
            ("Proofread the report", 25, "No typo is left in it"),
        ]);
        assert_eq!(
            rule(&report, "Write the quarterly report for the board"),
            Some("action")
        );
        let dated = plan(&[
            (
                "Gather the receipts by 26th March, 2024",
                25,
                "All receipts are in one folder",
            ),
            ("Fill in the tax forms", 25, "Every field has a value"),
            ("Submit the tax return", 25, "The confirmation is saved"),
        ]);
        assert_eq!(rule(&dated, "Prepare my tax return"), Some("invented"));
        let markup = plan(&[
            (
                "Gather the receipts</br>",
                25,
                "All receipts are in one folder",
            ),
            ("Fill in the tax forms", 25, "Every field has a value"),
            ("Submit the tax return", 25, "The confirmation is saved"),
        ]);
        assert_eq!(rule(&markup, "Prepare my tax return"), Some("markup"));
        let vague = plan(&[
            ("Gather the receipts", 25, "Gather the receipts"),
            ("Fill in the tax forms", 25, "Every field has a value"),
            ("Submit the tax return", 25, "The confirmation is saved"),
        ]);
        assert_eq!(rule(&vague, "Prepare my tax return"), Some("done_when"));
        let cut = plan(&[
            (
                "Read the introduction of the tax guide, then",
                25,
                "The main points are noted",
            ),
            ("Fill in the tax forms", 25, "Every field has a value"),
            ("Submit the tax return", 25, "The confirmation is saved"),
        ]);
        assert_eq!(rule(&cut, "Prepare my tax return"), Some("unfinished"));
        let meta = plan(&[
            (
                "Gather the tax receipts",
                25,
                "A receipt is found, but it's not finished yet, so I'll add another",
            ),
            ("Fill in the tax forms", 25, "Every field has a value"),
            ("Submit the tax return", 25, "The confirmation is saved"),
        ]);
        assert_eq!(rule(&meta, "Prepare my tax return"), Some("done_when"));
        let good = plan(&[
            (
                "Collect the receipts and statements for the tax return",
                25,
                "Every document sits in one folder",
            ),
            (
                "Fill in the income and expense sections",
                40,
                "Each section has a figure from a document",
            ),
            (
                "Check the tax return against last year's",
                20,
                "Every big change has a reason noted",
            ),
            (
                "Submit the tax return and save the receipt",
                15,
                "The confirmation is saved",
            ),
        ]);
        assert_eq!(rule(&good, "Prepare my tax return"), None);
        // Two blocks are too few at granularity 3.
        let short = Breakdown {
            blocks: good.blocks[..2].to_vec(),
        };
        assert_eq!(rule(&short, "Prepare my tax return"), Some("count"));
    }

    #[test]
    fn names_and_numbers_from_the_task_may_be_used() {
        let g = Grounds::new(
            &task("Plan the team offsite in Lisbon for 12 people"),
            &UserContext::default(),
            &[],
        );
        let ok = plan(&[
            (
                "List what the 12 people need from the offsite",
                20,
                "The needs sit in one note",
            ),
            (
                "Book a venue in Lisbon for the offsite",
                30,
                "The venue confirmed the booking",
            ),
            (
                "Send the offsite agenda to the team",
                15,
                "Everyone has the agenda",
            ),
        ]);
        assert_eq!(breakdown(&ok, 3, &g), Ok(()));
        let invented = plan(&[
            (
                "List what the 14 people need from the offsite",
                20,
                "The needs sit in one note",
            ),
            (
                "Book a venue in Porto for the offsite",
                30,
                "The venue confirmed the booking",
            ),
            (
                "Send the offsite agenda to the team",
                15,
                "Everyone has the agenda",
            ),
        ]);
        assert_eq!(
            breakdown(&invented, 3, &g).map_err(|f| f.rule),
            Err("invented")
        );
    }

    #[test]
    fn the_total_stays_near_the_estimate() {
        let mut t = task("Prepare my tax return");
        t.estimated_minutes = 60;
        let g = Grounds::new(&t, &UserContext::default(), &[]);
        let long = plan(&[
            (
                "Collect the tax documents",
                60,
                "Every document sits in one folder",
            ),
            ("Fill in the tax forms", 60, "Each field has a figure"),
            ("Submit the tax return", 30, "The confirmation is saved"),
        ]);
        assert_eq!(breakdown(&long, 3, &g).map_err(|f| f.rule), Err("estimate"));
    }

    #[test]
    fn risks_are_risks_of_the_task() {
        let g = grounds_of(&task("Prepare my tax return"));
        let a = |risk: &str| Analysis {
            complexity: 3,
            estimated_minutes: 90,
            skills: vec!["finance".into()],
            risks: vec![risk.into()],
            first_step: "Collect the tax documents".into(),
        };
        assert_eq!(
            analysis(
                &a("write the report to ensure it is completed on time and within budget"),
                &g
            )
            .map_err(|f| f.rule),
            Err("risks"),
            "an instruction is not a risk"
        );
        assert_eq!(
            analysis(&a("The venue may be booked out"), &g).map_err(|f| f.rule),
            Err("off_topic"),
            "a venue is not a risk of a tax return"
        );
        assert_eq!(
            analysis(&a("Write the report on time"), &g).map_err(|f| f.rule),
            Err("risks")
        );
        assert_eq!(
            analysis(&a("A missing receipt delays the tax return"), &g),
            Ok(())
        );
    }

    #[test]
    fn a_message_names_the_streak_it_has() {
        let m = |text: &str| Motivation {
            message: text.into(),
            streak_days: 0,
            completed_today: 0,
        };
        let p = Progress {
            completed_today: 1,
            streak_days: 4,
        };
        assert_eq!(
            motivation(&m("Keep going!"), p).map_err(|f| f.rule),
            Err("progress")
        );
        assert_eq!(motivation(&m("Four days in a row: keep going!"), p), Ok(()));
        assert_eq!(motivation(&m("Keep going!"), Progress::default()), Ok(()));
    }
}
