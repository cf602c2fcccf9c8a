//! Rule-based answers: always valid, useful without a model.

use chrono::{DateTime, Duration, Utc};

use crate::chains::{
    Analysis, Block, Breakdown, Motivation, ProofCheck, Ritual, RitualRequest, TaskInput, Verdict,
    bounds,
};
use crate::context::{Progress, UserContext};

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "the", "to", "of", "for", "in", "on", "my", "our", "with", "at", "by", "is",
    "it", "this", "that", "be", "or", "as", "from", "so",
];

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

fn clip(text: &str, max: usize) -> String {
    let t = text.trim();
    if t.chars().count() <= max {
        return t.to_owned();
    }
    let cut: String = t.chars().take(max - 1).collect();
    format!("{}…", cut.trim_end())
}

fn round5(m: u32) -> u32 {
    (m + 2) / 5 * 5
}

/// The minutes a task probably takes, from its size.
fn estimate(task: &TaskInput) -> u32 {
    if task.available_minutes > 0 {
        return task.available_minutes;
    }
    let n = words(&task.title).len() + words(&task.description).len();
    (30 + 10 * n as u32).clamp(30, 240)
}

/// Steps named in the description: its sentences and "then" clauses.
fn described_steps(description: &str) -> Vec<String> {
    description
        .split(['.', ';', '\n'])
        .flat_map(|s| s.split(" then "))
        .flat_map(|s| s.split(", "))
        .map(|s| {
            s.trim_matches(|c: char| c == ',' || c.is_whitespace())
                .trim_start_matches("and ")
                .trim()
        })
        .filter(|s| words(s).len() >= 2)
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

pub fn breakdown(task: &TaskInput, granularity: u8, context: &UserContext) -> Breakdown {
    let (min, max, lo, hi) = bounds(granularity);
    let title = task.title.trim();
    // A similar past task's blocks are the best template there is.
    let template: Vec<(String, i32)> = context
        .similar_tasks
        .iter()
        .find(|s| s.score >= 0.6 && s.task.blocks.len() >= min)
        .map(|s| s.task.blocks.clone())
        .unwrap_or_default();
    let mut titles: Vec<(String, Option<u32>)> = if !template.is_empty() {
        template
            .into_iter()
            .map(|(t, m)| (t, u32::try_from(m).ok()))
            .collect()
    } else {
        described_steps(&task.description)
            .into_iter()
            .map(|t| (t, None))
            .collect()
    };
    if titles.len() < min {
        let phases = [
            format!("Get ready: gather what \"{}\" needs", clip(title, 40)),
            format!("Do the first part of \"{}\"", clip(title, 50)),
            format!("Do the main part of \"{}\"", clip(title, 50)),
            format!("Finish the remaining parts of \"{}\"", clip(title, 40)),
            format!("Check the result of \"{}\"", clip(title, 50)),
            "Fix what the check found".to_owned(),
            "Write down what is left and the next step".to_owned(),
        ];
        titles = phases
            .iter()
            .take(min.max(3).min(max))
            .map(|t| (t.clone(), None))
            .collect();
        while titles.len() < min {
            let n = titles.len() + 1;
            titles.push((format!("Work on \"{}\", part {n}", clip(title, 40)), None));
        }
    }
    titles.truncate(max);
    let n = titles.len() as u32;
    let each = (estimate(task) / n.max(1)).clamp(lo, hi);
    let mut blocks: Vec<Block> = titles
        .into_iter()
        .map(|(t, minutes)| Block {
            done_when: format!("\"{}\" is done and you could show it", clip(&t, 80)),
            title: clip(&t, 80),
            minutes: round5(minutes.unwrap_or(each)).clamp(lo, hi),
        })
        .collect();
    let available = task.available_minutes;
    let total: u32 = blocks.iter().map(|b| b.minutes).sum();
    if available > 0 && total > available {
        for b in &mut blocks {
            b.minutes = (b.minutes * available / total).clamp(lo, hi);
        }
    }
    Breakdown { blocks }
}

const SKILLS: &[(&[&str], &str)] = &[
    (
        &[
            "write",
            "draft",
            "blog",
            "letter",
            "report",
            "document",
            "documentation",
            "story",
            "newsletter",
        ],
        "writing",
    ),
    (
        &[
            "code",
            "fix",
            "refactor",
            "test",
            "tests",
            "migrate",
            "bug",
            "api",
            "deploy",
            "integration",
        ],
        "programming",
    ),
    (
        &["plan", "organise", "organize", "schedule", "prepare"],
        "planning",
    ),
    (&["design", "logo", "slides"], "design"),
    (&["research", "study", "learn", "read", "exam"], "research"),
    (
        &["call", "email", "meeting", "interview", "review"],
        "communication",
    ),
    (
        &[
            "budget",
            "tax",
            "taxes",
            "invoice",
            "mortgage",
            "insurance",
            "sales",
        ],
        "finance",
    ),
    (
        &[
            "clean",
            "paint",
            "build",
            "move",
            "garden",
            "declutter",
            "repair",
        ],
        "hands-on work",
    ),
];

pub fn analysis(task: &TaskInput, now: DateTime<Utc>, context: &UserContext) -> Analysis {
    let all = words(&format!("{} {}", task.title, task.description));
    let hard = [
        "migrate",
        "design",
        "research",
        "refactor",
        "plan",
        "launch",
        "architecture",
    ];
    let mut complexity = 1
        + u32::from(all.len() > 6)
        + u32::from(all.len() > 20)
        + u32::from(all.iter().any(|w| hard.contains(&w.as_str())));
    let soon = task.deadline.is_some_and(|d| d - now < Duration::hours(24));
    complexity = (complexity + u32::from(soon)).clamp(1, 5);
    let mut skills: Vec<String> = SKILLS
        .iter()
        .filter(|(keys, _)| all.iter().any(|w| keys.contains(&w.as_str())))
        .map(|(_, s)| (*s).to_owned())
        .take(5)
        .collect();
    if skills.is_empty() {
        skills.push("focus".into());
    }
    let mut risks = Vec::new();
    if soon {
        risks.push("The deadline is less than a day away".to_owned());
    }
    if complexity >= 4 {
        risks.push("Large scope: split it into blocks before starting".to_owned());
    }
    risks.push("Interruptions: silence notifications during focus blocks".to_owned());
    let plan = breakdown(task, 3, context);
    Analysis {
        complexity,
        estimated_minutes: plan.total_minutes().clamp(5, 2880),
        skills,
        risks,
        first_step: clip(&plan.blocks[0].title, 120),
    }
}

/// The user's progress: the context's count when it has one, else counted
/// over the recent tasks it carries (a lower bound), with days in the
/// user's time zone.
pub fn progress(context: &UserContext, now: DateTime<Utc>) -> Progress {
    if let Some(p) = context.progress {
        return p;
    }
    let tz: chrono_tz::Tz = context
        .timezone
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let today = now.with_timezone(&tz).date_naive();
    let mut days: Vec<_> = context
        .recent_tasks
        .iter()
        .filter_map(|t| t.completed_at.map(|c| c.with_timezone(&tz).date_naive()))
        .collect();
    let completed_today = days.iter().filter(|d| **d == today).count() as u32;
    days.sort();
    days.dedup();
    let mut streak = 0;
    let mut day = if days.contains(&today) {
        today
    } else {
        today - Duration::days(1)
    };
    while days.contains(&day) {
        streak += 1;
        day -= Duration::days(1);
    }
    Progress {
        completed_today,
        streak_days: streak,
    }
}

pub fn motivation(task_title: &str, context: &UserContext, now: DateTime<Utc>) -> Motivation {
    let Progress {
        completed_today: today,
        streak_days: streak,
    } = progress(context, now);
    let mood = context
        .moods
        .first()
        .map(|m| m.to_lowercase())
        .unwrap_or_default();
    let low = [
        "tired",
        "stressed",
        "anxious",
        "sad",
        "overwhelmed",
        "exhausted",
    ]
    .iter()
    .any(|w| mood.contains(w));
    let next = if task_title.trim().is_empty() {
        "the next block".to_owned()
    } else {
        format!("\"{}\"", clip(task_title, 60))
    };
    let opener = if low {
        "Go gently today: one small block is enough to move forward.".to_owned()
    } else if streak >= 2 {
        format!("{streak} days in a row: keep the streak alive.")
    } else if today > 0 {
        format!("{today} done today already, nice work.")
    } else {
        "A fresh start: the first block is the hardest, and it is short.".to_owned()
    };
    Motivation {
        message: clip(
            &format!("{opener} Start {next} now and let the timer do the rest."),
            280,
        ),
        streak_days: streak,
        completed_today: today,
    }
}

pub fn proof(task: &TaskInput, proof: &str, link: &str) -> ProofCheck {
    let task_words = words(&format!("{} {}", task.title, task.description));
    let proof_words = words(proof);
    let overlap = proof_words
        .iter()
        .filter(|w| task_words.contains(w))
        .count();
    let long = proof.trim().chars().count() >= 40;
    let has_link = !link.is_empty();
    let mut reasons = Vec::new();
    if overlap > 0 {
        reasons.push(format!(
            "The proof mentions {overlap} of the task's key words"
        ));
    } else {
        reasons.push("The proof does not mention what the task is about".to_owned());
    }
    if has_link {
        reasons.push("A link to the result is attached".to_owned());
    }
    if !long {
        reasons.push("The description of the result is short".to_owned());
    }
    let (verdict, confidence) = if overlap > 0 && (long || has_link) {
        (Verdict::Accepted, 60 + 10 * u32::from(long && has_link))
    } else if overlap > 0 || long || has_link {
        (Verdict::NeedsMore, 50)
    } else {
        (Verdict::Rejected, 60)
    };
    ProofCheck {
        verdict,
        confidence,
        reasons,
    }
}

pub fn ritual(request: &RitualRequest, hour: u32, context: &UserContext) -> Ritual {
    let mood = if request.mood.trim().is_empty() {
        context.moods.first().cloned().unwrap_or_default()
    } else {
        request.mood.clone()
    }
    .to_lowercase();
    let tired = ["tired", "sleepy", "exhausted", "low"]
        .iter()
        .any(|w| mood.contains(w));
    let anxious = ["stressed", "anxious", "overwhelmed", "nervous"]
        .iter()
        .any(|w| mood.contains(w));
    let (title, mut steps) = match hour {
        5..=11 => (
            "Morning warm-up",
            vec!["Clear the desk and open only what the task needs".to_owned()],
        ),
        12..=17 => (
            "Afternoon reset",
            vec!["Stand up, stretch and refill your water".to_owned()],
        ),
        _ => (
            "Evening wind-in",
            vec!["Dim distractions: phone face down, other tabs closed".to_owned()],
        ),
    };
    if tired {
        steps.push("Drink a glass of water and take ten slow breaths".to_owned());
    } else if anxious {
        steps.push("Breathe in for four counts and out for six, five times".to_owned());
    } else {
        steps.push("Take three deep breaths and picture the block finished".to_owned());
    }
    let task = if request.task_title.trim().is_empty() {
        "the next block".to_owned()
    } else {
        format!("\"{}\"", clip(&request.task_title, 50))
    };
    steps.push(clip(
        &format!("Write one line on what {task} will produce"),
        100,
    ));
    Ritual {
        title: title.to_owned(),
        steps,
        minutes: if tired { 5 } else { 3 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{SimilarTask, TaskBrief};

    fn task(title: &str, description: &str, minutes: u32) -> TaskInput {
        TaskInput {
            title: title.into(),
            description: description.into(),
            deadline: None,
            available_minutes: minutes,
        }
    }

    #[test]
    fn the_breakdown_follows_the_description_and_the_granularity() {
        let t = task(
            "Ship the newsletter",
            "Collect the three lead stories. Write the intro, then proofread everything; schedule the send",
            90,
        );
        let b = breakdown(&t, 3, &UserContext::default());
        let titles: Vec<&str> = b.blocks.iter().map(|b| b.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Collect the three lead stories",
                "Write the intro",
                "Proofread everything",
                "Schedule the send"
            ]
        );
        assert!(b.total_minutes() <= 90 + 18, "{}", b.total_minutes());
        for g in 1..=5u8 {
            let b = breakdown(&task("Clean the garage", "", 0), g, &UserContext::default());
            let (min, max, lo, hi) = bounds(g);
            assert!(
                (min..=max).contains(&b.blocks.len()),
                "g{g}: {}",
                b.blocks.len()
            );
            assert!(
                b.blocks.iter().all(|x| (lo..=hi).contains(&x.minutes)),
                "g{g}: {b:?}"
            );
        }
    }

    #[test]
    fn a_similar_past_task_shapes_the_breakdown() {
        let context = UserContext {
            similar_tasks: vec![SimilarTask {
                task: TaskBrief {
                    title: "File the quarterly tax return".into(),
                    status: "completed".into(),
                    completed_at: None,
                    blocks: vec![
                        ("Gather receipts".into(), 30),
                        ("Fill in the forms".into(), 45),
                        ("Submit online".into(), 15),
                    ],
                },
                score: 0.82,
            }],
            ..UserContext::default()
        };
        let b = breakdown(&task("File the tax return", "", 0), 3, &context);
        let titles: Vec<&str> = b.blocks.iter().map(|b| b.title.as_str()).collect();
        assert_eq!(
            titles,
            ["Gather receipts", "Fill in the forms", "Submit online"]
        );
        assert_eq!(b.blocks[1].minutes, 45);
    }

    #[test]
    fn proofs_are_judged_by_relevance_and_substance() {
        let t = task("Write the quarterly report", "", 0);
        let good = proof(
            &t,
            "Wrote the quarterly report, 12 pages, sent to finance for review",
            "",
        );
        assert_eq!(good.verdict, Verdict::Accepted);
        let thin = proof(&t, "report done", "");
        assert_eq!(thin.verdict, Verdict::NeedsMore);
        let unrelated = proof(&t, "lol", "");
        assert_eq!(unrelated.verdict, Verdict::Rejected);
    }

    #[test]
    fn the_streak_counts_consecutive_days() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let done = |days_ago: i64| TaskBrief {
            title: "t".into(),
            status: "completed".into(),
            completed_at: Some(now - Duration::days(days_ago)),
            blocks: vec![],
        };
        let context = UserContext {
            recent_tasks: vec![done(0), done(0), done(1), done(2), done(4)],
            ..UserContext::default()
        };
        assert_eq!(
            progress(&context, now),
            Progress {
                completed_today: 2,
                streak_days: 3
            }
        );
    }
}
