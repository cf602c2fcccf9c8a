//! The example library: breakdowns of common kinds of work written by the
//! team (`library/*.txt`), found by embedding similarity (or, without an
//! embedder, by shared words), shown to the model as an example and adapted
//! to the task's own subject as the fallback's template.

use std::sync::{Arc, LazyLock};

use focusforge_embed::{Embedder, cosine};
use tokio::sync::OnceCell;

use crate::chains::{Block, Breakdown, TaskInput, bounds};
use crate::text::{capitalise, clip, replace_phrase, stem, stem_set, subject, words};

/// One example breakdown.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub title: String,
    /// The phrase of the title the blocks name, replaced by the task's own.
    pub subject: String,
    pub blocks: Vec<Block>,
}

impl Example {
    /// All of the example's words, for what counts as on topic.
    pub fn text(&self) -> String {
        let mut s = self.title.clone();
        for b in &self.blocks {
            s.push(' ');
            s.push_str(&b.title);
            s.push(' ');
            s.push_str(&b.done_when);
        }
        s
    }
}

const SOURCES: [&str; 3] = [
    include_str!("../library/work.txt"),
    include_str!("../library/home.txt"),
    include_str!("../library/life.txt"),
];

/// Parses library text: entries separated by blank lines, each
/// `# title`, `subject: phrase`, then `- title | minutes | done when` lines.
pub fn parse(text: &str) -> Result<Vec<Example>, String> {
    let mut out = Vec::new();
    for entry in text.split("\n\n").map(str::trim).filter(|e| !e.is_empty()) {
        let mut lines = entry.lines();
        let title = lines
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .ok_or_else(|| format!("an entry does not start with '# ': {entry:?}"))?
            .trim()
            .to_owned();
        let subject = lines
            .next()
            .and_then(|l| l.strip_prefix("subject: "))
            .ok_or_else(|| format!("{title:?}: no 'subject: ' line"))?
            .trim()
            .to_owned();
        let mut blocks = Vec::new();
        for line in lines {
            let parts: Vec<&str> = line
                .strip_prefix("- ")
                .ok_or_else(|| format!("{title:?}: {line:?} is not a block"))?
                .split('|')
                .map(str::trim)
                .collect();
            let [t, m, d] = parts[..] else {
                return Err(format!(
                    "{title:?}: {line:?} is not 'title | minutes | done when'"
                ));
            };
            blocks.push(Block {
                title: t.to_owned(),
                minutes: m.parse().map_err(|_| format!("{title:?}: minutes {m:?}"))?,
                done_when: d.to_owned(),
            });
        }
        out.push(Example {
            title,
            subject,
            blocks,
        });
    }
    Ok(out)
}

/// The examples shipped with the project.
pub fn builtin() -> &'static [Example] {
    static EXAMPLES: LazyLock<Vec<Example>> = LazyLock::new(|| {
        SOURCES
            .iter()
            .flat_map(|s| parse(s).unwrap_or_else(|e| panic!("library: {e}")))
            .collect()
    });
    &EXAMPLES
}

/// Finds the examples nearest a task.
#[derive(Clone)]
pub struct Library {
    examples: &'static [Example],
    embedder: Option<Arc<dyn Embedder>>,
    vectors: Arc<OnceCell<Option<Vec<Vec<f32>>>>>,
}

impl Library {
    pub fn new(embedder: Option<Arc<dyn Embedder>>) -> Self {
        Self {
            examples: builtin(),
            embedder,
            vectors: Arc::new(OnceCell::new()),
        }
    }

    /// Embeds the examples now rather than on the first request.
    pub async fn warm(&self) {
        if let Some(embedder) = &self.embedder {
            self.vectors(embedder).await;
        }
    }

    /// Whether examples are found by embedding similarity.
    pub fn embeds(&self) -> bool {
        self.embedder.is_some()
    }

    /// The embedding similarity of two texts; `None` without an embedder.
    pub async fn similarity(&self, a: &str, b: &str) -> Option<f32> {
        let v = self
            .embedder
            .as_ref()?
            .embed(vec![a.to_owned(), b.to_owned()])
            .await
            .ok()?;
        Some(cosine(v.first()?, v.get(1)?))
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The `k` examples nearest `task`, best first, with their similarity.
    pub async fn nearest(&self, task: &TaskInput, k: usize) -> Vec<(f32, &'static Example)> {
        let examples = self.examples;
        let mut scored: Vec<(f32, &'static Example)> = match self.embedded(task).await {
            // The same verb counts a little: writing a report is nearer
            // writing another report than summarising one.
            Some((query, vectors)) => vectors
                .iter()
                .zip(examples)
                .map(|(v, e)| {
                    let verb = same_verb(&task.title, &e.title);
                    (cosine(&query, v) + if verb { SAME_VERB } else { 0.0 }, e)
                })
                .collect(),
            None => examples
                .iter()
                .map(|e| (lexical(&task.title, &e.title), e))
                .collect(),
        };
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(k);
        scored
    }

    async fn embedded(&self, task: &TaskInput) -> Option<(Vec<f32>, &Vec<Vec<f32>>)> {
        let embedder = self.embedder.as_ref()?;
        let vectors = self.vectors(embedder).await.as_ref()?;
        let query = embedder
            .embed(vec![task.title.trim().to_owned()])
            .await
            .ok()?
            .pop()?;
        Some((query, vectors))
    }

    async fn vectors(&self, embedder: &Arc<dyn Embedder>) -> &Option<Vec<Vec<f32>>> {
        self.vectors
            .get_or_init(|| async {
                let titles = self.examples.iter().map(|e| e.title.clone()).collect();
                match embedder.embed(titles).await {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tracing::warn!(error = %e, "example library not embedded; matching by words");
                        None
                    }
                }
            })
            .await
    }
}

/// What sharing the verb adds to an embedding similarity.
const SAME_VERB: f32 = 0.08;

fn same_verb(a: &str, b: &str) -> bool {
    let first = |t: &str| words(t).first().map(|w| stem(w));
    first(a).is_some() && first(a) == first(b)
}

/// Word overlap of two titles: the subject's words count double, the verb
/// once.
fn lexical(a: &str, b: &str) -> f32 {
    let (sa, sb) = (stem_set(&subject(a)), stem_set(&subject(b)));
    let shared_subject = sa.intersection(&sb).count() as f32;
    let (wa, wb) = (stem_set(a), stem_set(b));
    let shared = wa.intersection(&wb).count() as f32;
    let verb = same_verb(a, b);
    let union = wa.union(&wb).count().max(1) as f32;
    (shared + shared_subject + 0.5 * f32::from(u8::from(verb))) / (union + 1.0)
}

/// The longest title a draft may have: what a model may write.
pub const DRAFT_TITLE_MAX: usize = 70;

fn round5(m: u32) -> u32 {
    (m + 2) / 5 * 5
}

/// Scales the blocks' minutes so they add up to about `target`, each kept
/// in `lo..=hi` and a multiple of 5.
pub fn fit_minutes(blocks: &mut [Block], target: u32, lo: u32, hi: u32) {
    let total: u32 = blocks.iter().map(|b| b.minutes).sum();
    if target == 0 || total == 0 {
        return;
    }
    for b in blocks.iter_mut() {
        let scaled = (u64::from(b.minutes) * u64::from(target) / u64::from(total)) as u32;
        b.minutes = round5(scaled).clamp(lo.max(5), hi);
    }
}

/// `example` adapted to `task`: its subject replaced by the task's, its
/// blocks merged or split to the granularity, its minutes fitted to the
/// task's estimate or time available.
pub fn adapt(example: &Example, task: &TaskInput, granularity: u8) -> Breakdown {
    let (min, max, lo, hi) = bounds(granularity);
    let own = subject(&task.title);
    let own = if own.is_empty() {
        task.title.trim().to_lowercase()
    } else {
        own
    };
    let mut blocks: Vec<Block> = example
        .blocks
        .iter()
        .map(|b| Block {
            title: clip(
                &capitalise(&substitute(&b.title, &example.subject, &own)),
                DRAFT_TITLE_MAX,
            ),
            minutes: b.minutes,
            done_when: clip(&substitute(&b.done_when, &example.subject, &own), 120),
        })
        .collect();
    // Too many: join neighbours, from the end.
    while blocks.len() > max && blocks.len() >= 2 {
        let i = blocks.len() - 2;
        let next = blocks.remove(i + 1);
        let b = &mut blocks[i];
        let joined = format!("{} and {}", b.title, lower_first(&next.title));
        if joined.chars().count() <= DRAFT_TITLE_MAX {
            b.title = joined;
        }
        b.minutes += next.minutes;
        b.done_when = next.done_when;
    }
    // Too few: split the longest block into doing and checking it.
    while blocks.len() < min {
        let Some((i, _)) = blocks.iter().enumerate().max_by_key(|(_, b)| b.minutes) else {
            break;
        };
        let b = blocks[i].clone();
        let half = (b.minutes / 2).max(5);
        blocks[i].minutes = half;
        blocks[i].done_when = clip(
            &format!("A first pass is made: {}", lower_first(&b.done_when)),
            120,
        );
        blocks.insert(
            i + 1,
            Block {
                title: clip(
                    &format!("Finish: {}", lower_first(&b.title)),
                    DRAFT_TITLE_MAX,
                ),
                minutes: half,
                done_when: b.done_when,
            },
        );
    }
    let target = if task.estimated_minutes > 0 {
        task.estimated_minutes
    } else if task.available_minutes > 0 {
        task.available_minutes
            .min(blocks.iter().map(|b| b.minutes).sum())
    } else {
        blocks.iter().map(|b| b.minutes).sum()
    };
    fit_minutes(&mut blocks, target, lo, hi);
    Breakdown { blocks }
}

/// `text` with the example's subject replaced by the task's, and the
/// articles before it agreeing: none before a name ("Install Rust"), "an"
/// before a vowel.
fn substitute(text: &str, from: &str, to: &str) -> String {
    let mut out = replace_phrase(text, from, to);
    // "the new laptop" with "laptop" made "new laptop" is not "the new new
    // laptop".
    let mut kept: Vec<&str> = Vec::new();
    for w in out.split(' ') {
        if kept
            .last()
            .is_some_and(|l| l.eq_ignore_ascii_case(w) && !w.is_empty())
        {
            continue;
        }
        kept.push(w);
    }
    out = kept.join(" ");
    if to.chars().next().is_some_and(char::is_uppercase) {
        for article in ["the ", "The ", "a ", "A ", "an ", "An "] {
            out = out.replace(&format!("{article}{to}"), to);
        }
        return out;
    }
    let vowel = to.starts_with(['a', 'e', 'i', 'o', 'u']);
    let (wrong, right) = if vowel { ("a ", "an ") } else { ("an ", "a ") };
    for (w, r) in [(wrong, right), (&capitalise(wrong), &capitalise(right))] {
        out = replace_phrase(&out, &format!("{w}{to}"), &format!("{r}{to}"));
    }
    out
}

fn lower_first(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rubric;
    use crate::text::is_verb;

    #[test]
    fn the_library_is_well_formed() {
        let all = builtin();
        assert!(all.len() >= 250, "{} examples", all.len());
        let mut titles = std::collections::HashSet::new();
        for e in all {
            assert!(titles.insert(e.title.to_lowercase()), "{} twice", e.title);
            assert!(
                e.title.to_lowercase().contains(&e.subject.to_lowercase()),
                "{}: subject {:?} not in the title",
                e.title,
                e.subject
            );
            for b in &e.blocks {
                let verb = b.title.split_whitespace().next().unwrap_or("");
                assert!(
                    is_verb(verb.trim_end_matches(',')),
                    "{}: {:?} does not start with a known verb",
                    e.title,
                    b.title
                );
            }
        }
    }

    #[test]
    fn the_examples_pass_the_rubric_for_their_own_task_at_every_granularity() {
        let mut failed = Vec::new();
        for e in builtin() {
            let task = TaskInput {
                title: e.title.clone(),
                ..TaskInput::default()
            };
            for g in 1..=5 {
                let b = adapt(e, &task, g);
                let grounds = rubric::Grounds::new(&task, &Default::default(), &[e.text()]);
                if let Err(f) = rubric::breakdown(&b, g, &grounds) {
                    failed.push(format!("{} at granularity {g}: {f}", e.title));
                }
            }
        }
        // A long subject or the split of granularity 5 can push a title past
        // what a draft may hold; the chain then takes the next candidate.
        let pairs = builtin().len() * 5;
        assert!(
            failed.len() * 50 <= pairs,
            "{} of {pairs} fail:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }

    #[test]
    fn articles_agree_with_the_new_subject() {
        assert_eq!(
            substitute("Install the toolchain", "toolchain", "Rust"),
            "Install Rust"
        );
        assert_eq!(
            substitute("Write a report", "report", "essay"),
            "Write an essay"
        );
        assert_eq!(
            substitute("Write an essay", "essay", "report"),
            "Write a report"
        );
        assert_eq!(
            substitute("Charge the new laptop", "laptop", "new laptop"),
            "Charge the new laptop"
        );
    }

    #[tokio::test]
    async fn adapting_replaces_the_subject_and_fits_the_estimate() {
        let library = Library::new(None);
        let task = TaskInput {
            title: "Clean the attic".into(),
            estimated_minutes: 60,
            ..TaskInput::default()
        };
        let nearest = library.nearest(&task, 3).await;
        let (_, example) = nearest
            .iter()
            .find(|(_, e)| e.title.starts_with("Clean"))
            .expect("a cleaning example is among the nearest");
        let b = adapt(example, &task, 3);
        assert!(b.blocks.iter().any(|x| x.title.contains("attic")), "{b:#?}");
        assert!(
            b.total_minutes().abs_diff(60) <= 15,
            "{}",
            b.total_minutes()
        );
    }
}
