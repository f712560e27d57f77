//! Changing a stepped task between its steps: how providers built to test
//! verification cheat (an honest run never does).

/// A change to a stepped task between its steps, made by a provider built
/// to test verification (`cairn-node`'s training adversaries skip updates,
/// swap the data, stop early or nudge weights this way); an honest run has
/// none. A cheat that traces with the same tamper defends the result it
/// reported, so a dispute must find the step where it departed.
pub trait Tamper {
    /// Called after start-up (`step` 0) and after each step while the task
    /// runs, with the guest's linear memory; returns whether to go on
    /// (`false` ends the task there, as if its last step had returned 0).
    fn between_steps(&mut self, step: u64, memory: &mut [u8], task: &crate::Task<'_>) -> bool;
}
