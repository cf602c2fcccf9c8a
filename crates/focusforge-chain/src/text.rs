//! Words, stems and phrases: what the rubric, the example library and the
//! fallback read texts with.

use std::collections::HashSet;

/// Words that carry no subject.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "been",
    "before",
    "being",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "down",
    "each",
    "every",
    "for",
    "from",
    "get",
    "got",
    "had",
    "has",
    "have",
    "he",
    "her",
    "here",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "just",
    "let",
    "me",
    "more",
    "most",
    "my",
    "no",
    "not",
    "now",
    "of",
    "off",
    "on",
    "one",
    "only",
    "or",
    "other",
    "our",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "upon",
    "us",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "thing",
    "things",
    "everything",
    "something",
    "anything",
    "nothing",
    "way",
    "ways",
    "part",
    "parts",
    "first",
    "next",
    "last",
    "new",
    "old",
    "left",
    "right",
    "done",
    "make",
    "sure",
    "ready",
    "which",
    "whole",
    "rest",
    "still",
    "yet",
    "per",
    "via",
    "ok",
    "okay",
    "please",
];

/// Verbs a step may start with: the imperative of common actions. A block
/// title, a ritual step or a first step starts with one of them.
pub const VERBS: &[&str] = &[
    "Accept",
    "Add",
    "Address",
    "Adjust",
    "Advertise",
    "Agree",
    "Air",
    "Analyse",
    "Analyze",
    "Animate",
    "Annotate",
    "Answer",
    "Apologise",
    "Apologize",
    "Apply",
    "Approve",
    "Archive",
    "Arrange",
    "Ask",
    "Assemble",
    "Assign",
    "Attach",
    "Attend",
    "Audit",
    "Automate",
    "Back",
    "Bag",
    "Bake",
    "Balance",
    "Benchmark",
    "Bill",
    "Bin",
    "Bind",
    "Blend",
    "Block",
    "Boil",
    "Bolt",
    "Book",
    "Borrow",
    "Box",
    "Brainstorm",
    "Break",
    "Breathe",
    "Brew",
    "Bring",
    "Brush",
    "Budget",
    "Build",
    "Bump",
    "Buy",
    "Calculate",
    "Calibrate",
    "Call",
    "Cancel",
    "Caption",
    "Capture",
    "Carry",
    "Carve",
    "Cast",
    "Catalog",
    "Catalogue",
    "Catch",
    "Categorise",
    "Categorize",
    "Caulk",
    "Celebrate",
    "Change",
    "Charge",
    "Chase",
    "Check",
    "Chill",
    "Chisel",
    "Choose",
    "Chop",
    "Circle",
    "Circulate",
    "Claim",
    "Clamp",
    "Clean",
    "Clear",
    "Click",
    "Clone",
    "Close",
    "Coach",
    "Collect",
    "Color",
    "Colour",
    "Combine",
    "Comment",
    "Commit",
    "Compare",
    "Compile",
    "Complete",
    "Compose",
    "Compost",
    "Condense",
    "Conduct",
    "Configure",
    "Confirm",
    "Connect",
    "Consolidate",
    "Contact",
    "Convert",
    "Cook",
    "Copy",
    "Correct",
    "Count",
    "Courier",
    "Cover",
    "Create",
    "Cross",
    "Cut",
    "Dampen",
    "Debug",
    "Decide",
    "Declare",
    "Declutter",
    "Decorate",
    "Define",
    "Defrost",
    "Degrease",
    "Delegate",
    "Delete",
    "Deliver",
    "Deploy",
    "Deposit",
    "Descale",
    "Describe",
    "Design",
    "Detach",
    "Dig",
    "Digitise",
    "Digitize",
    "Dim",
    "Disable",
    "Discard",
    "Discuss",
    "Disinfect",
    "Display",
    "Dispose",
    "Dispute",
    "Divide",
    "Do",
    "Document",
    "Donate",
    "Download",
    "Downsize",
    "Draft",
    "Drain",
    "Draw",
    "Drill",
    "Drink",
    "Drive",
    "Drop",
    "Dry",
    "Dub",
    "Dust",
    "Ease",
    "Eat",
    "Edit",
    "Email",
    "Empty",
    "Enable",
    "End",
    "Enrol",
    "Enroll",
    "Enter",
    "Escalate",
    "Estimate",
    "Evaluate",
    "Exchange",
    "Exercise",
    "Expand",
    "Explain",
    "Explore",
    "Export",
    "Extract",
    "Facilitate",
    "Feed",
    "Fertilise",
    "Fertilize",
    "Fetch",
    "File",
    "Fill",
    "Film",
    "Finalise",
    "Finalize",
    "Find",
    "Finish",
    "Fit",
    "Fix",
    "Flag",
    "Flatten",
    "Flow",
    "Fold",
    "Follow",
    "Forgive",
    "Form",
    "Format",
    "Forward",
    "Frame",
    "Freeze",
    "Furnish",
    "Gather",
    "Generate",
    "Get",
    "Give",
    "Glue",
    "Go",
    "Grab",
    "Greet",
    "Grill",
    "Group",
    "Grout",
    "Hand",
    "Handle",
    "Handwrite",
    "Hang",
    "Harvest",
    "Highlight",
    "Hire",
    "Hold",
    "Hoover",
    "Host",
    "Identify",
    "Illustrate",
    "Implement",
    "Import",
    "Improve",
    "Include",
    "Index",
    "Inspect",
    "Install",
    "Insulate",
    "Insure",
    "Interview",
    "Introduce",
    "Invest",
    "Investigate",
    "Invite",
    "Invoice",
    "Iron",
    "Jog",
    "Join",
    "Jot",
    "Keep",
    "Knit",
    "Label",
    "Laminate",
    "Lather",
    "Launch",
    "Launder",
    "Lay",
    "Learn",
    "Lease",
    "Leave",
    "Lend",
    "Lift",
    "Line",
    "Link",
    "List",
    "Listen",
    "Load",
    "Locate",
    "Lock",
    "Log",
    "Look",
    "Lower",
    "Mail",
    "Make",
    "Map",
    "Marinate",
    "Mark",
    "Match",
    "Measure",
    "Meet",
    "Memorise",
    "Memorize",
    "Mend",
    "Mentor",
    "Merge",
    "Message",
    "Migrate",
    "Mix",
    "Moderate",
    "Monitor",
    "Mop",
    "Mount",
    "Move",
    "Mow",
    "Mulch",
    "Mute",
    "Nail",
    "Name",
    "Narrate",
    "Negotiate",
    "Note",
    "Notify",
    "Nudge",
    "Offer",
    "Oil",
    "Onboard",
    "Open",
    "Optimise",
    "Optimize",
    "Order",
    "Organise",
    "Organize",
    "Outline",
    "Pack",
    "Paint",
    "Pair",
    "Park",
    "Pass",
    "Paste",
    "Patch",
    "Pause",
    "Pay",
    "Perform",
    "Phone",
    "Photocopy",
    "Photograph",
    "Pick",
    "Picture",
    "Pin",
    "Ping",
    "Place",
    "Plan",
    "Plant",
    "Plaster",
    "Play",
    "Plug",
    "Plunge",
    "Polish",
    "Poll",
    "Portion",
    "Post",
    "Pour",
    "Practice",
    "Practise",
    "Prep",
    "Prepare",
    "Present",
    "Press",
    "Price",
    "Print",
    "Prioritise",
    "Prioritize",
    "Probe",
    "Profile",
    "Promote",
    "Proofread",
    "Propose",
    "Prototype",
    "Prune",
    "Publish",
    "Pull",
    "Pump",
    "Purchase",
    "Push",
    "Put",
    "Question",
    "Quiz",
    "Quote",
    "Raise",
    "Rake",
    "Rank",
    "Rate",
    "Read",
    "Rearrange",
    "Rebuild",
    "Recap",
    "Recheck",
    "Recite",
    "Reconcile",
    "Record",
    "Recruit",
    "Recycle",
    "Redecorate",
    "Reduce",
    "Refactor",
    "Refill",
    "Refinance",
    "Refit",
    "Reflect",
    "Refund",
    "Register",
    "Rehearse",
    "Reject",
    "Release",
    "Relisten",
    "Relocate",
    "Remind",
    "Remove",
    "Rename",
    "Renew",
    "Renovate",
    "Rent",
    "Reorganise",
    "Reorganize",
    "Repair",
    "Repeat",
    "Replace",
    "Reply",
    "Report",
    "Reproduce",
    "Request",
    "Reread",
    "Research",
    "Reserve",
    "Reset",
    "Resolve",
    "Respond",
    "Rest",
    "Restart",
    "Restore",
    "Retrace",
    "Return",
    "Review",
    "Revise",
    "Revisit",
    "Rewatch",
    "Rewrite",
    "Ride",
    "Ring",
    "Rinse",
    "Roast",
    "Roll",
    "Run",
    "Sample",
    "Sand",
    "Save",
    "Saw",
    "Say",
    "Scan",
    "Schedule",
    "Score",
    "Scrape",
    "Screen",
    "Screw",
    "Script",
    "Scrub",
    "Seal",
    "Search",
    "Season",
    "Select",
    "Sell",
    "Send",
    "Separate",
    "Serve",
    "Service",
    "Set",
    "Settle",
    "Sew",
    "Shape",
    "Share",
    "Ship",
    "Shop",
    "Shortlist",
    "Shovel",
    "Show",
    "Shred",
    "Sign",
    "Silence",
    "Simplify",
    "Siphon",
    "Sit",
    "Sketch",
    "Skim",
    "Sleep",
    "Slice",
    "Slide",
    "Soak",
    "Soften",
    "Solder",
    "Solve",
    "Sort",
    "Sow",
    "Speak",
    "Spend",
    "Split",
    "Spray",
    "Spread",
    "Stack",
    "Stain",
    "Stand",
    "Standardise",
    "Standardize",
    "Staple",
    "Start",
    "Stash",
    "Step",
    "Sterilise",
    "Stick",
    "Stir",
    "Stock",
    "Stop",
    "Store",
    "Storyboard",
    "Stretch",
    "Strip",
    "Study",
    "Submit",
    "Subscribe",
    "Subtitle",
    "Summarise",
    "Summarize",
    "Survey",
    "Swap",
    "Sweep",
    "Switch",
    "Sync",
    "Tag",
    "Tailor",
    "Take",
    "Talk",
    "Tally",
    "Tap",
    "Tape",
    "Taste",
    "Teach",
    "Tell",
    "Test",
    "Text",
    "Thank",
    "Thaw",
    "Throw",
    "Tick",
    "Tidy",
    "Tighten",
    "Tile",
    "Time",
    "Tip",
    "Top",
    "Total",
    "Touch",
    "Towel",
    "Trace",
    "Track",
    "Trade",
    "Train",
    "Transfer",
    "Translate",
    "Triage",
    "Trigger",
    "Trim",
    "Try",
    "Tune",
    "Turn",
    "Tutor",
    "Type",
    "Unclog",
    "Unpack",
    "Unplug",
    "Unscrew",
    "Unsubscribe",
    "Update",
    "Upgrade",
    "Upholster",
    "Upload",
    "Use",
    "Vacuum",
    "Varnish",
    "Verify",
    "Visit",
    "Voice",
    "Volunteer",
    "Wait",
    "Walk",
    "Warm",
    "Wash",
    "Watch",
    "Water",
    "Wear",
    "Weed",
    "Weigh",
    "Welcome",
    "Weld",
    "Wet",
    "Whittle",
    "Wipe",
    "Wire",
    "Withdraw",
    "Work",
    "Wrap",
    "Write",
];

/// Lowercase words of `text` (letters and digits; apostrophes kept inside).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains(&word)
}

/// A crude stem: plural and verb endings cut, then at most six letters,
/// so "shelves"/"shelve", "reports"/"report", "planning"/"plan" and
/// "parties"/"party" meet.
pub fn stem(word: &str) -> String {
    let mut w = word.to_lowercase();
    if w.len() > 4 && w.ends_with("ies") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else {
        for end in ["ing", "ed", "es", "s"] {
            if w.len() > end.len() + 2 && w.ends_with(end) && !w.ends_with("ss") {
                w.truncate(w.len() - end.len());
                let b = w.as_bytes();
                let n = b.len();
                // "planning" -> "plan", "stopped" -> "stop".
                if (end == "ing" || end == "ed")
                    && n >= 3
                    && b[n - 1] == b[n - 2]
                    && !b"aeioulsz".contains(&b[n - 1])
                {
                    w.truncate(n - 1);
                }
                break;
            }
        }
    }
    let s = w.trim_end_matches('e');
    s.chars().take(6).collect()
}

/// The stems of the words of `text` that carry meaning.
pub fn content_stems(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| !is_stopword(w) && w.chars().count() >= 2)
        .map(|w| stem(&w))
        .collect()
}

pub fn stem_set(text: &str) -> HashSet<String> {
    content_stems(text).into_iter().collect()
}

/// Whether `word` (any case) is one of [`VERBS`].
pub fn is_verb(word: &str) -> bool {
    VERBS.iter().any(|v| v.eq_ignore_ascii_case(word))
}

/// The first word of `text`.
pub fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("")
}

const PARTICLES: &[&str] = &[
    "up", "out", "down", "off", "away", "over", "through", "back",
];
const DETERMINERS: &[&str] = &[
    "the", "a", "an", "my", "our", "your", "his", "her", "their", "some", "this", "that", "these",
    "those", "all",
];
const PREPOSITIONS: &[&str] = &[
    "for", "in", "at", "on", "with", "to", "by", "before", "after", "from", "about", "during",
    "into", "until", "so", "and", "because", "while", "since", "without", "within", "via",
];

/// What a task is about: its title without the leading verb, particles and
/// determiners, up to the first preposition ("Plan the team offsite in
/// Lisbon" is about "team offsite"). Empty when nothing is left.
pub fn subject(title: &str) -> String {
    let raw: Vec<&str> = title
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '\''))
        .filter(|w| !w.is_empty())
        .collect();
    let mut i = 0;
    // A title starts with its verb: a known one, one followed by a
    // determiner ("Investigate a production incident"), or one with a
    // verb's ending ("Renovate bathroom").
    let verb_like = |w: &str| {
        let w = w.to_lowercase();
        ["ate", "ise", "ize", "ify", "en"]
            .iter()
            .any(|end| w.len() > end.len() + 2 && w.ends_with(end))
    };
    if raw.len() >= 3 && !is_verb(raw[0]) && is_verb(raw[1]) {
        // "Deep clean the kitchen".
        i = 2;
    } else if raw.len() >= 2
        && (is_verb(raw[0])
            || DETERMINERS.contains(&raw[1].to_lowercase().as_str())
            || verb_like(raw[0]))
    {
        i = 1;
    }
    loop {
        match raw.get(i).map(|w| w.to_lowercase()) {
            Some(w)
                if PARTICLES.contains(&w.as_str())
                    || DETERMINERS.contains(&w.as_str())
                    || PREPOSITIONS.contains(&w.as_str()) =>
            {
                i += 1
            }
            _ => break,
        }
    }
    let rest = &raw[i.min(raw.len())..];
    let end = rest
        .iter()
        .position(|w| PREPOSITIONS.contains(&w.to_lowercase().as_str()))
        .unwrap_or(rest.len());
    let mut phrase = if end == 0 { rest } else { &rest[..end] };
    // "the basics of Rust" is about Rust.
    const GENERIC_HEADS: &[&str] = &[
        "basics",
        "fundamentals",
        "principles",
        "history",
        "introduction",
        "intro",
        "rest",
        "remainder",
        "draft",
        "chapters",
        "chapter",
        "end",
        "start",
        "beginning",
        "list",
        "pile",
        "first",
        "second",
        "final",
        "next",
        "last",
    ];
    if let Some(of) = phrase.iter().position(|w| w.eq_ignore_ascii_case("of"))
        && of + 1 < phrase.len()
        && phrase[..of]
            .iter()
            .all(|w| GENERIC_HEADS.contains(&w.to_lowercase().as_str()))
    {
        phrase = &phrase[of + 1..];
        while phrase
            .first()
            .is_some_and(|w| DETERMINERS.contains(&w.to_lowercase().as_str()))
        {
            phrase = &phrase[1..];
        }
    }
    let mut words: Vec<&str> = phrase.iter().take(4).copied().collect();
    // Cut at four words, "running three times a" ends with a word that
    // needs another.
    while words.len() > 1
        && words.last().is_some_and(|w| {
            let w = w.to_lowercase();
            DETERMINERS.contains(&w.as_str()) || PREPOSITIONS.contains(&w.as_str())
        })
    {
        words.pop();
    }
    words.join(" ")
}

/// `text` with every whole-word occurrence of `from` (any case) replaced
/// by `to`.
pub fn replace_phrase(text: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_lowercase();
    let needle = from.to_lowercase();
    // Lowercasing keeps byte offsets for the ASCII the library is written in;
    // anything else is left as it is.
    if lower.len() != text.len() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(&needle) {
        let start = at + found;
        let end = start + needle.len();
        let before = lower[..start].chars().next_back();
        let after = lower[end..].chars().next();
        let whole = before.is_none_or(|c| !c.is_alphanumeric())
            && after.is_none_or(|c| !c.is_alphanumeric());
        out.push_str(&text[at..start]);
        out.push_str(if whole { to } else { &text[start..end] });
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` cut to `max` characters at a word boundary, with an ellipsis.
pub fn clip(text: &str, max: usize) -> String {
    let t = text.trim();
    if t.chars().count() <= max {
        return t.to_owned();
    }
    let cut: String = t.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => &cut[..i],
        _ => &cut,
    };
    format!("{}…", cut.trim_end_matches([' ', ',', ';', ':']))
}

/// The first letter upper case.
pub fn capitalise(text: &str) -> String {
    let mut c = text.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_drop_the_verb_and_what_follows_a_preposition() {
        for (title, want) in [
            ("Plan the team offsite in Lisbon", "team offsite"),
            (
                "Write the quarterly report for the board",
                "quarterly report",
            ),
            ("Clean the garage", "garage"),
            ("Prepare for the job interview", "job interview"),
            ("Back up the family computer", "family computer"),
            ("Sort out the insurance claim", "insurance claim"),
            ("Learn the basics of Rust", "Rust"),
            ("Read the first chapters of the book", "book"),
            ("Taxes", "Taxes"),
            ("Deep clean the kitchen", "kitchen"),
            ("Start running three times a week", "running three times"),
            ("Investigate a production incident", "production incident"),
            ("Renovate bathroom", "bathroom"),
            ("Quarterly report", "Quarterly report"),
            ("Move to the new apartment", "new apartment"),
        ] {
            assert_eq!(subject(title), want, "{title}");
        }
    }

    #[test]
    fn stems_meet_across_endings() {
        assert_eq!(stem("shelves"), stem("shelve"));
        assert_eq!(stem("reports"), stem("report"));
        assert_eq!(stem("planning"), stem("plan"));
        assert_eq!(stem("parties"), stem("party"));
        assert_eq!(stem("Garage"), stem("garages"));
    }

    #[test]
    fn phrases_are_replaced_as_whole_words() {
        assert_eq!(
            replace_phrase("Sweep the Garage floor; garages stay", "garage", "kitchen"),
            "Sweep the kitchen floor; garages stay"
        );
        assert_eq!(clip("one two three four five", 12), "one two…");
    }
}
