//! Which parts of a plan run, and who writes to each sink: decided from the plan's shape alone,
//! before any task starts.

use super::barriers::Expected;
use crate::plan::{Input, Output};

/// What the topology needs of a query: the streams it reads and where its rows go.
pub(super) struct QueryShape<'a> {
    pub inputs: &'a [Input],
    pub output: &'a Output,
}

/// What the topology needs of a source.
pub(super) struct SourceShape {
    /// The sink its late rows go to.
    pub late_sink: Option<usize>,
    pub dead_letter: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Topology {
    /// Queries that run: they write to a sink, or feed a view that runs.
    pub live: Vec<bool>,
    /// Sources that run: a live query reads them.
    pub started: Vec<bool>,
    /// For each sink, the parts that write to it: the live queries that insert into it and the
    /// started sources whose late rows go there. A sink flushes for a checkpoint once it has the
    /// barrier from all of them.
    pub writers: Vec<usize>,
    /// The answers a checkpoint needs.
    pub expected: Expected,
}

pub(super) fn topology(queries: &[QueryShape], sources: &[SourceShape], sinks: usize) -> Topology {
    // Views come before their readers, so one pass from the end decides.
    let mut live = vec![false; queries.len()];
    for q in (0..queries.len()).rev() {
        live[q] = matches!(queries[q].output, Output::Sink(_))
            || queries
                .iter()
                .zip(&live)
                .any(|(r, &l)| l && r.inputs.contains(&Input::View(q)));
    }
    let started: Vec<bool> = (0..sources.len())
        .map(|i| {
            queries
                .iter()
                .zip(&live)
                .any(|(q, &l)| l && q.inputs.contains(&Input::Source(i)))
        })
        .collect();
    let mut writers = vec![0usize; sinks];
    for (query, _) in queries.iter().zip(&live).filter(|(_, l)| **l) {
        if let Output::Sink(k) = query.output {
            writers[*k] += 1;
        }
    }
    for (source, _) in sources.iter().zip(&started).filter(|(_, s)| **s) {
        if let Some(k) = source.late_sink {
            writers[k] += 1;
        }
    }
    let dead_letter_sinks = sources
        .iter()
        .zip(&started)
        .filter(|(s, started)| **started && s.dead_letter)
        .count();
    let expected = Expected {
        sources: started.iter().filter(|&&s| s).count(),
        queries: live.iter().filter(|&&l| l).count(),
        sinks: writers.iter().filter(|&&w| w > 0).count() + dead_letter_sinks,
    };
    Topology {
        live,
        started,
        writers,
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_nobody_reads_does_not_run_nor_does_the_source_only_it_reads() {
        // Source 0 feeds view 0 (read by nobody); source 1 feeds view 1, read by query 2.
        let inputs = [
            vec![Input::Source(0)],
            vec![Input::Source(1)],
            vec![Input::View(1)],
        ];
        let outputs = [
            Output::View("unread".into()),
            Output::View("read".into()),
            Output::Sink(0),
        ];
        let queries: Vec<QueryShape> = inputs
            .iter()
            .zip(&outputs)
            .map(|(i, o)| QueryShape {
                inputs: i,
                output: o,
            })
            .collect();
        let sources = [
            SourceShape {
                late_sink: Some(1),
                dead_letter: true,
            },
            SourceShape {
                late_sink: Some(1),
                dead_letter: true,
            },
        ];
        let t = topology(&queries, &sources, 2);
        assert_eq!(t.live, [false, true, true]);
        assert_eq!(t.started, [false, true]);
        // Sink 0: query 2; sink 1: the late rows of the started source only.
        assert_eq!(t.writers, [1, 1]);
        assert_eq!(
            (t.expected.sources, t.expected.queries, t.expected.sinks),
            (1, 2, 3),
            "two sinks with writers and one dead-letter sink answer a checkpoint"
        );
    }

    #[test]
    fn a_sink_written_by_two_queries_and_a_union_counts_each_writer() {
        let inputs = [
            vec![Input::Source(0)],
            vec![Input::Source(0), Input::Source(1)],
        ];
        let outputs = [Output::Sink(0), Output::Sink(0)];
        let queries: Vec<QueryShape> = inputs
            .iter()
            .zip(&outputs)
            .map(|(i, o)| QueryShape {
                inputs: i,
                output: o,
            })
            .collect();
        let sources = [
            SourceShape {
                late_sink: None,
                dead_letter: false,
            },
            SourceShape {
                late_sink: None,
                dead_letter: false,
            },
        ];
        let t = topology(&queries, &sources, 1);
        assert_eq!(t.writers, [2]);
        assert_eq!(t.started, [true, true]);
        assert_eq!(t.expected.sinks, 1);
    }
}
