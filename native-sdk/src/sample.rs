//! Batch sampling: which frames' CPU trace is worth sending.
//!
//! A game marks its frames ([`crate::frame`]) on one thread, the frame
//! thread. With [`Sampling::Frames`], the collector cuts every thread's CPU
//! events into blocks at the frame boundaries, holds the events of the frame
//! in progress, and once the next marker arrives judges the frame: it is
//! kept when it was slow (longer than `slow_ratio` times the moving average
//! of recent frames), when any thread marked an [`crate::instant`] in it, or
//! by a pseudo-random heartbeat draw. The blocks of kept frames are sent; the
//! others are dropped and counted. Logs and metrics are always sent.

use std::collections::VecDeque;

/// What the collector sends of the threads' CPU trace (spans, frame
/// markers, instants). Logs and metrics are always sent whole.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Sampling {
    /// Every block (the default: nothing recorded is dropped unless the
    /// sending queue is full).
    #[default]
    All,
    /// Only the blocks of interesting frames, once the program marks frames
    /// (until the first marker everything is sent).
    Frames(FramePolicy),
}

/// Which frames are interesting, and how long undecided events may wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FramePolicy {
    /// A frame is slow when it lasts more than this many times the moving
    /// average of the frames before it.
    pub slow_ratio: f64,
    /// How many frames the moving average spans (an exponential moving
    /// average weighting each new frame by `2 / (average_frames + 1)`).
    pub average_frames: u32,
    /// Share of the other frames kept anyway, so that ordinary frames are
    /// seen too (0.01: one in a hundred on average; 0: none).
    pub heartbeat: f64,
    /// Seed of the heartbeat's draws (random by default; fixed in tests).
    pub seed: u64,
    /// Most bytes of CPU events held while their frame is in progress;
    /// beyond it the oldest are dropped (and counted) undecided.
    pub ring_bytes: usize,
}

impl Default for FramePolicy {
    fn default() -> Self {
        FramePolicy {
            slow_ratio: 1.5,
            average_frames: 60,
            heartbeat: 0.01,
            seed: u64::from_le_bytes(crate::ids::random_id()[..8].try_into().unwrap_or([7; 8])),
            ring_bytes: 16 << 20,
        }
    }
}

/// Where an event falls among the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Before the first frame marker: always sent.
    BeforeFrames,
    /// In the frame of this index (counted from the first marker).
    Frame(u64),
    /// In a frame so old its verdict was forgotten: dropped.
    Forgotten,
}

/// Frames judged and remembered, for events published late.
const HISTORY: usize = 1024;

/// The frames as the frame thread's markers delimit them, and their verdicts.
pub(crate) struct Frames {
    policy: FramePolicy,
    average: Option<f64>,
    rng: u64,
    /// The index of `recent[0]`.
    first: u64,
    /// Recent frames, oldest first; the last is in progress.
    recent: VecDeque<Frame>,
    /// Whether older frames were forgotten.
    trimmed: bool,
}

struct Frame {
    start: i64,
    marked: bool,
    keep: Option<bool>,
}

impl Frames {
    pub(crate) fn new(policy: FramePolicy) -> Self {
        Frames {
            policy,
            average: None,
            rng: policy.seed,
            first: 0,
            recent: VecDeque::new(),
            trimmed: false,
        }
    }

    pub(crate) fn policy(&self) -> &FramePolicy {
        &self.policy
    }

    /// A frame begins at `ticks` (and the one before ends); markers that do
    /// not move forward are ignored.
    pub(crate) fn begin(&mut self, ticks: i64) {
        if self.recent.back().is_none_or(|f| ticks > f.start) {
            self.recent.push_back(Frame {
                start: ticks,
                marked: false,
                keep: None,
            });
        }
    }

    /// Frames stop at `ticks` (the frame thread ended, or the program
    /// shuts down): the frame in progress ends there, and later events are
    /// sent as they come until a marker begins a frame again.
    pub(crate) fn end(&mut self, ticks: i64) {
        let Some(last) = self.recent.back() else {
            return;
        };
        if last.keep.is_none() {
            self.recent.push_back(Frame {
                start: ticks.max(last.start + 1),
                marked: false,
                keep: Some(true),
            });
        }
    }

    /// A user-marked instant: its frame is kept (unless already judged).
    pub(crate) fn instant(&mut self, ticks: i64) {
        if let Place::Frame(i) = self.place(ticks) {
            let frame = &mut self.recent[(i - self.first) as usize];
            frame.marked |= frame.keep.is_none();
        }
    }

    /// Judges every complete frame not judged yet, in order.
    pub(crate) fn judge(&mut self) {
        for i in 0..self.recent.len().saturating_sub(1) {
            if self.recent[i].keep.is_some() {
                continue;
            }
            let duration = (self.recent[i + 1].start - self.recent[i].start) as f64;
            let interesting = self.interesting(duration);
            let frame = &mut self.recent[i];
            frame.keep = Some(interesting || frame.marked);
        }
        while self.recent.len() > HISTORY {
            self.recent.pop_front();
            self.first += 1;
            self.trimmed = true;
        }
    }

    /// Slow against the moving average, or drawn as a heartbeat; updates both.
    fn interesting(&mut self, duration: f64) -> bool {
        let slow = self
            .average
            .is_some_and(|average| duration > self.policy.slow_ratio * average);
        let weight = 2.0 / (f64::from(self.policy.average_frames.max(1)) + 1.0);
        self.average = Some(match self.average {
            None => duration,
            Some(average) => average + weight * (duration - average),
        });
        // splitmix64: a draw per frame, so a seed gives one sequence.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let draw = (z >> 11) as f64 / (1u64 << 53) as f64;
        slow || draw < self.policy.heartbeat
    }

    /// Ticks before which every frame is complete (the start of the frame
    /// in progress); `None` when events of any time can be settled.
    pub(crate) fn complete_before(&self) -> Option<i64> {
        self.recent
            .back()
            .filter(|f| f.keep.is_none())
            .map(|f| f.start)
    }

    pub(crate) fn place(&self, ticks: i64) -> Place {
        match self.recent.front() {
            None => Place::BeforeFrames,
            Some(first) if ticks < first.start => {
                if self.trimmed {
                    Place::Forgotten
                } else {
                    Place::BeforeFrames
                }
            }
            Some(_) => {
                let after = self.recent.partition_point(|f| f.start <= ticks);
                Place::Frame(self.first + after as u64 - 1)
            }
        }
    }

    /// Whether the events of `place` are sent (its frame must be complete).
    pub(crate) fn keep(&self, place: Place) -> bool {
        match place {
            Place::BeforeFrames => true,
            Place::Forgotten => false,
            Place::Frame(i) => {
                let frame = i
                    .checked_sub(self.first)
                    .and_then(|at| self.recent.get(at as usize));
                let keep = frame.and_then(|f| f.keep);
                debug_assert!(
                    frame.is_none() || keep.is_some(),
                    "frame {i} is judged before its events"
                );
                keep.unwrap_or(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(heartbeat: f64, seed: u64) -> FramePolicy {
        FramePolicy {
            slow_ratio: 1.5,
            average_frames: 10,
            heartbeat,
            seed,
            ring_bytes: 1 << 20,
        }
    }

    /// Frames of the given durations from tick 0, the last one in progress;
    /// the indexes of those kept.
    fn kept(frames: &mut Frames, durations: &[i64], instants: &[i64]) -> Vec<u64> {
        let mut t = 0;
        for d in durations {
            frames.begin(t);
            t += d;
        }
        frames.begin(t);
        for &i in instants {
            frames.instant(i);
        }
        frames.judge();
        (0..durations.len() as u64)
            .filter(|&i| frames.keep(Place::Frame(i)))
            .collect()
    }

    #[test]
    fn slow_frames_and_marked_frames_are_kept() {
        let mut durations = vec![1000; 40];
        durations[10] = 1600; // 1.6x the average
        durations[25] = 5000;
        durations[26] = 1400; // after a hitch, under 1.5x the raised average
        let mut frames = Frames::new(policy(0.0, 1));
        // An instant in frame 17 (which starts at 17 600, after the longer frame 10).
        assert_eq!(
            kept(&mut frames, &durations, &[18_000]),
            [10, 17, 25],
            "slow or marked"
        );
        assert_eq!(frames.place(-1), Place::BeforeFrames);
        assert!(frames.keep(frames.place(-1)), "before the first marker");
        assert_eq!(frames.place(17_600), Place::Frame(17));
        assert_eq!(frames.complete_before(), Some(durations.iter().sum()));
    }

    #[test]
    fn heartbeats_keep_a_share_of_ordinary_frames_by_seed() {
        let durations = vec![1000; 1000];
        let run = |seed| kept(&mut Frames::new(policy(0.05, seed)), &durations, &[]);
        let (a, b, c) = (run(1), run(1), run(2));
        assert_eq!(a, b, "one seed, one draw sequence");
        assert_ne!(a, c);
        assert!((25..80).contains(&a.len()), "about 5%: {}", a.len());
        assert!(kept(&mut Frames::new(policy(0.0, 1)), &durations, &[]).is_empty());
        assert_eq!(
            kept(&mut Frames::new(policy(1.0, 1)), &durations[..5], &[]).len(),
            5
        );
    }

    #[test]
    fn frames_end_when_their_thread_does() {
        let mut frames = Frames::new(policy(0.0, 1));
        kept(&mut frames, &[1000, 1000, 1000], &[]);
        assert_eq!(frames.complete_before(), Some(3000), "frame 3 in progress");
        frames.end(3010);
        frames.judge();
        assert!(!frames.keep(Place::Frame(3)), "10 ticks: not slow");
        assert_eq!(frames.complete_before(), None);
        assert!(
            frames.keep(frames.place(5000)),
            "after the frames, events are sent"
        );
        frames.begin(6000);
        assert_eq!(frames.complete_before(), Some(6000), "marked again");
        assert_eq!(frames.place(6500), Place::Frame(5));
    }

    #[test]
    fn frames_older_than_the_history_are_forgotten() {
        let mut frames = Frames::new(policy(1.0, 1));
        let durations = vec![10; HISTORY + 5];
        kept(&mut frames, &durations, &[]);
        assert_eq!(frames.place(0), Place::Forgotten);
        assert!(!frames.keep(Place::Forgotten));
        assert_eq!(frames.place(60), Place::Frame(6));
    }
}
