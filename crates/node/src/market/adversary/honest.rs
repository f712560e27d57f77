//! A build for use: no node can be made to cheat. The cheats' types are
//! empty, so no value of them exists and each method below is never
//! called; they keep the call sites the same in both builds.

use std::path::Path;

use cairn_exec::{ExecError, Tamper, Task};
use cairn_wire::{ContentId, Keypair};

use crate::market::MarketConfig;
use crate::market::proto::Report;

/// No provider misbehaviour: a build without the `adversary` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {}

/// No requester misbehaviour: a build without the `adversary` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequesterMisbehave {}

/// Refuses every misbehaviour: this build has none.
pub fn configure(_: &mut MarketConfig, name: &str) -> Result<(), String> {
    Err(format!(
        "'{name}': this node is built without misbehaviours (they are for tests: the \
         `adversary` feature of cairn-node)"
    ))
}

impl Misbehave {
    pub(crate) fn withholds_reveals(self) -> bool {
        match self {}
    }

    pub(crate) fn stonewalls(self) -> bool {
        match self {}
    }

    pub(crate) fn stands_by_its_lie(self) -> bool {
        match self {}
    }

    pub(crate) fn extra_reports(self, _: &Keypair, _: ContentId) -> Vec<Report> {
        match self {}
    }

    pub(crate) fn tamper(
        self,
        _: Option<RenderCheat>,
        _: &Path,
        _: &mut cairn_exec::TaskResult,
        _: bool,
        _: u64,
    ) -> Result<(), String> {
        match self {}
    }
}

impl RequesterMisbehave {
    pub(crate) fn withholds(self) -> bool {
        match self {}
    }

    pub(crate) fn frames(self) -> bool {
        match self {}
    }

    pub(crate) fn shortchange(
        self,
        _: &cairn_wire::Keypair,
        _: &cairn_wire::Signed<cairn_ledger::Acceptance>,
    ) -> Option<cairn_wire::Signed<cairn_ledger::Acceptance>> {
        match self {}
    }

    pub(crate) fn crashes_with_a_case(self) -> bool {
        match self {}
    }
}

/// No render cheat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RenderCheat {}

impl RenderCheat {
    pub(crate) fn new(how: Option<Misbehave>, _: &str) -> Option<Self> {
        how.map(|how| match how {})
    }

    pub(crate) fn inputs(self, _: Option<&Path>, _: &Path) -> std::io::Result<Option<InputCopy>> {
        match self {}
    }

    pub(crate) fn args(self, _: &[String]) -> Vec<String> {
        match self {}
    }
}

/// No training cheat.
pub(crate) enum TrainingCheat {}

impl TrainingCheat {
    pub(crate) fn new(how: Option<Misbehave>, _: &[String]) -> Option<Self> {
        how.map(|how| match how {})
    }

    pub(crate) fn play<T>(
        self,
        _: &Task<'_>,
        _: &Path,
        _: impl FnOnce(&Task<'_>, &mut dyn Tamper) -> Result<T, ExecError>,
    ) -> Result<T, ExecError> {
        match self {}
    }
}

/// No copy of the inputs.
pub(crate) enum InputCopy {}

impl InputCopy {
    pub(crate) fn path(&self) -> &Path {
        match *self {}
    }
}
