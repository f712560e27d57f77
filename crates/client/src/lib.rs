//! client: A Rust client of a Cairn node's HTTP API: submit a job from a job file or from code, follow its progress, and fetch its results verified against their content ids.
//!
//! The `cairn` CLI talks to nodes through it. Every answer is read back as
//! a type of [`cairn_api`], the same types the node answers with, so a
//! field renamed on one side breaks the build, not a user. Blocking (it is
//! built on `reqwest`'s blocking client): call it from a thread, or from
//! `spawn_blocking` in async code.
//!
//! ```no_run
//! use cairn_client::{ApiToken, Client};
//!
//! let token = ApiToken::load(".cairn".as_ref())?;
//! let node = Client::new("http://127.0.0.1:8640").with_token(token);
//! let job = cairn_client::load_job("examples/render/job.toml".as_ref())?;
//! let id = node.submit_job(&job)?;
//! let last = node.follow(&id, |status| println!("{}/{} done", status.done, status.total))?;
//! for record in node.results(&id)? {
//!     for output in &record.outputs {
//!         let bytes = node.blob(&output.id)?; // checked against its id
//!         println!("task {}: {} ({} bytes)", record.task, output.name, bytes.len());
//!     }
//! }
//! # let _ = last;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod events;

use std::path::Path;
use std::time::Duration;

use cairn_job::{Job, ModuleRef};
use cairn_wire::{ContentId, PublicKey};
use serde::de::DeserializeOwned;

pub use cairn_api::{self as api, ApiToken, Submission, SubmittedFile};

/// How long one event stream is kept open; [`Client::follow`] opens
/// another when one ends.
const EVENTS_WAIT: Duration = Duration::from_secs(3_600);
/// How long any other request may take: a 1 GiB blob over a slow link.
const REQUEST_WAIT: Duration = Duration::from_secs(600);
/// The pause before an event stream that ended early is opened again, so
/// that one ending at once is not a busy loop.
const REOPEN_PAUSE: Duration = Duration::from_secs(1);
/// The budget of a job file that names none, µCAIRN.
pub const BUDGET_DEFAULT_UCAIRN: u64 = 1_000_000_000;
/// The highest price of a job file that names none, µCAIRN per Gfuel.
pub const PRICE_MAX_DEFAULT: u64 = 1_000;

/// What went wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node did not answer.
    #[error("cannot reach the node at {base}")]
    Unreachable {
        /// The node's address.
        base: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with a refusal.
    #[error("the node refused {path}: {message}")]
    Refused {
        /// What was asked.
        path: String,
        /// The HTTP status (401: no or wrong token; 404: no such thing).
        status: u16,
        /// What the node said was wrong.
        message: String,
    },
    /// The node answered something this client does not read.
    #[error("the node's answer to {path} is not a {what} (a node of another version?)")]
    Unexpected {
        /// What was asked.
        path: String,
        /// What was expected.
        what: &'static str,
    },
    /// A blob the node sent is not the one asked for.
    #[error("the blob the node sent for {id} does not match that content id")]
    Tampered {
        /// The id asked for.
        id: ContentId,
    },
    /// An event stream broke the protocol's bounds.
    #[error("{0}")]
    Stream(String),
    /// The job cannot be submitted as it is.
    #[error("{0}")]
    Job(String),
    /// A local file could not be read.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The HTTP status of a refusal, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What a call returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A job file, with its module and inputs found beside it; the built-in
/// modules (`cairn:render`, …) are known. A video job (`[video]`) has no
/// tasks until its clip is split (`cairn_exec::tool::video::VideoTools`
/// and `Job::segmented`, as `cairn job submit` does): refused here.
pub fn load_job(path: &Path) -> Result<Job> {
    let job = Job::load(path, &cairn_workloads::names()).map_err(|e| Error::Job(e.to_string()))?;
    if job.video.is_some() {
        return Err(Error::Job(format!(
            "{}: a [video] job's tasks come from its clip's segments: submit it with \
             `cairn job submit`, or split the clip (cairn_exec::tool::video) and call \
             Job::segmented",
            path.display()
        )));
    }
    Ok(job)
}

/// A node's HTTP API.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
    /// Shown on every request, for the routes that need it.
    token: Option<ApiToken>,
}

impl Client {
    /// A client of the node at `base` (`http://127.0.0.1:8640`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::blocking::Client::builder()
                .timeout(REQUEST_WAIT)
                .build()
                .expect("an HTTP client"),
            token: None,
        }
    }

    /// The same client, showing `token` (the node's `api.token`) for the
    /// routes that spend, store or read jobs.
    pub fn with_token(self, token: ApiToken) -> Self {
        Self {
            token: Some(token),
            ..self
        }
    }

    /// The same client, giving up on a request after `wait` (an event
    /// stream is kept open for an hour whatever this is).
    pub fn with_timeout(self, wait: Duration) -> Self {
        Self {
            http: reqwest::blocking::Client::builder()
                .timeout(wait)
                .build()
                .expect("an HTTP client"),
            ..self
        }
    }

    /// The node's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.header(reqwest::header::AUTHORIZATION, token.bearer()),
            None => request,
        }
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response> {
        request.send().map_err(|source| Error::Unreachable {
            base: self.base.clone(),
            source,
        })
    }

    /// GETs `path`; the answer, read as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        answer(path, self.send(self.request(reqwest::Method::GET, path))?)
    }

    /// GETs raw bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let response = self.send(self.request(reqwest::Method::GET, path))?;
        body(path, response)
    }

    /// POSTs JSON; the answer, read as `T`.
    pub fn post_json<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T> {
        let request = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        answer(path, self.send(request)?)
    }

    /// POSTs raw bytes; the answer, read as `T`.
    pub fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T> {
        let request = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        answer(path, self.send(request)?)
    }

    /// The server-sent events of kind `kind` at `path`: each event's data
    /// read as `T`, as it arrives. The iterator ends when the stream does
    /// (after an hour at the latest: open it again to go on).
    pub fn events<T: DeserializeOwned>(
        &self,
        path: &str,
        kind: &'static str,
    ) -> Result<impl Iterator<Item = Result<T>> + use<T>> {
        let response = self.send(
            self.request(reqwest::Method::GET, path)
                .timeout(EVENTS_WAIT),
        )?;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(path, status, &response.bytes().unwrap_or_default()));
        }
        let mut events = events::Events::new(response, kind);
        let path = path.to_string();
        Ok(
            std::iter::from_fn(move || events.next_data()).map(move |data| {
                let data = data.map_err(Error::Stream)?;
                serde_json::from_str(&data).map_err(|_| Error::Unexpected {
                    path: path.clone(),
                    what: short_type_name::<T>(),
                })
            }),
        )
    }

    /// The chain as of its last finalized block.
    pub fn status(&self) -> Result<api::Status> {
        self.get("/v1/status")
    }

    /// An account (all zero if it never received anything).
    pub fn account(&self, key: &PublicKey) -> Result<api::Account> {
        self.get(&format!("/v1/accounts/{key}"))
    }

    /// A job's open escrow; `None` once it is closed (or never opened).
    pub fn escrow(&self, job: &ContentId) -> Result<Option<api::Escrow>> {
        match self.get(&format!("/v1/escrows/{job}")) {
            Err(e) if e.status() == Some(404) => Ok(None),
            answer => answer.map(Some),
        }
    }

    /// The node's market peer: its key, addresses, and what it dropped.
    pub fn market(&self) -> Result<api::MarketStats> {
        self.get("/v1/market")
    }

    /// Every provider that bid for the node's work, most recent first.
    pub fn providers(&self) -> Result<Vec<api::ProviderSeen>> {
        Ok(self.get::<api::Providers>("/v1/providers")?.providers)
    }

    /// The prices the node's auctions cleared at, oldest first.
    pub fn prices(&self) -> Result<Vec<api::PricePoint>> {
        Ok(self.get::<api::Prices>("/v1/prices")?.prices)
    }

    /// Every job of the node, oldest first.
    pub fn jobs(&self) -> Result<Vec<api::JobStatus>> {
        Ok(self.get::<api::JobList>("/v1/jobs")?.jobs)
    }

    /// A job's status, with why it waits.
    pub fn job(&self, id: &ContentId) -> Result<api::JobStatus> {
        self.get(&format!("/v1/jobs/{id}"))
    }

    /// A job's finished tasks, by task: every page of them.
    pub fn results(&self, id: &ContentId) -> Result<Vec<api::TaskRecord>> {
        let path = format!("/v1/jobs/{id}/results");
        all_pages(&path, |from| match from {
            0 => self.get(&path),
            from => self.get(&format!("{path}?from={from}")),
        })
    }

    /// Cancels a job: its accepted results are kept and paid, its other
    /// tasks given up, and the rest of its escrow returns. Refused (409)
    /// when it is over already.
    pub fn cancel(&self, id: &ContentId) -> Result<api::JobStatus> {
        self.post_json(&format!("/v1/jobs/{id}/cancel"), Vec::new())
    }

    /// Judges results of a job that asks for approval: approved ones are
    /// paid when it settles, rejected ones are not paid and their tasks run
    /// again by other providers. Refused (409), changing nothing, when a
    /// task named has no result to judge or the job is over.
    pub fn judge(&self, id: &ContentId, approval: &api::Approval) -> Result<api::JobStatus> {
        let body = serde_json::to_vec(approval).expect("an approval serializes");
        self.post_json(&format!("/v1/jobs/{id}/approval"), body)
    }

    /// A blob's bytes, checked against its content id.
    pub fn blob(&self, id: &ContentId) -> Result<Vec<u8>> {
        let bytes = self.get_bytes(&format!("/v1/blobs/{id}"))?;
        if ContentId::of(&bytes) != *id {
            return Err(Error::Tampered { id: *id });
        }
        Ok(bytes)
    }

    /// Stores `bytes` on the node as a blob named `name` in a submission.
    pub fn upload(&self, name: &str, bytes: Vec<u8>) -> Result<SubmittedFile> {
        let size = bytes.len() as u64;
        let id = ContentId::of(&bytes);
        let stored: api::BlobStored = self.post_bytes("/v1/blobs", bytes)?;
        if stored.id != id {
            return Err(Error::Tampered { id });
        }
        Ok(SubmittedFile {
            name: name.to_string(),
            id,
            size,
        })
    }

    /// Submits a job whose module and inputs are uploaded already: the node
    /// checks it, escrows its budget and puts it up for auction. Returns
    /// its id.
    pub fn submit(&self, submission: &Submission) -> Result<ContentId> {
        let body = serde_json::to_vec(submission).expect("a submission serializes");
        if body.len() > api::SUBMISSION_BYTES_MAX {
            return Err(Error::Job(format!(
                "the job's {} tasks take {} bytes to submit; a node takes at most {}: split it \
                 into smaller jobs",
                submission.tasks.len(),
                body.len(),
                api::SUBMISSION_BYTES_MAX
            )));
        }
        Ok(self.post_json::<api::JobCreated>("/v1/jobs", body)?.job)
    }

    /// Uploads a loaded job file's module and inputs and submits it (see
    /// [`load_job`]). Returns its id.
    pub fn submit_job(&self, job: &Job) -> Result<ContentId> {
        let (module, inputs) = self.upload_job(job)?;
        let mut uploaded = std::collections::BTreeSet::new();
        for input in job.tasks().iter().flat_map(|t| &t.inputs) {
            if uploaded.insert(input.id) {
                self.upload_input(input)?;
            }
        }
        self.submit(&submission(job, module, inputs))
    }

    /// Uploads a loaded job file's module and its inputs (not its tasks'
    /// own): what its submission names.
    pub fn upload_job(&self, job: &Job) -> Result<(SubmittedFile, Vec<SubmittedFile>)> {
        let module = match &job.module {
            ModuleRef::Builtin(name) => cairn_workloads::find(name)
                .ok_or_else(|| Error::Job(format!("no built-in module '{name}'")))?
                .wasm
                .to_vec(),
            ModuleRef::File(path) => read(path)?,
            // The request is the module: a provider loads what it names.
            ModuleRef::Tool(request) => request.to_string().into_bytes(),
        };
        let module_name = match &job.module {
            ModuleRef::Tool(_) => "tool",
            ModuleRef::Builtin(_) | ModuleRef::File(_) => "module.wasm",
        };
        let module = self.upload(module_name, module)?;
        let mut inputs = Vec::with_capacity(job.inputs.len());
        for input in &job.inputs {
            inputs.push(self.upload(&input.name, read(&input.host_path)?)?);
        }
        Ok((module, inputs))
    }

    /// Uploads a task's own input by the id it was read with: a file
    /// that changed since is refused, not submitted unseen.
    pub fn upload_input(&self, input: &cairn_job::InputFile) -> Result<SubmittedFile> {
        let sent = self.upload(&input.name, read(&input.host_path)?)?;
        if sent.id != input.id {
            return Err(Error::Job(format!(
                "{} changed since it was read",
                input.host_path.display()
            )));
        }
        Ok(sent)
    }

    /// Adds tasks to a live stream after its last; their own inputs must
    /// be uploaded. Refused (409) once the stream is ended.
    pub fn add_tasks(
        &self,
        id: &ContentId,
        tasks: &[cairn_job::TaskSpec],
    ) -> Result<api::TasksAdded> {
        let more = api::MoreTasks {
            tasks: tasks.iter().map(submitted_task).collect(),
        };
        let body = serde_json::to_vec(&more).expect("tasks serialize");
        self.post_json(&format!("/v1/jobs/{id}/tasks"), body)
    }

    /// Ends a live stream: it settles once its tasks are decided.
    pub fn end_stream(&self, id: &ContentId) -> Result<api::JobStatus> {
        self.post_json(&format!("/v1/jobs/{id}/end"), Vec::new())
    }

    /// One page of a job's finished tasks, from task `from` on.
    pub fn results_page(&self, id: &ContentId, from: u32) -> Result<api::JobResults> {
        self.get(&format!("/v1/jobs/{id}/results?from={from}"))
    }

    /// Follows a job until it is over, calling `each` with every status it
    /// goes through (the first at once); returns the last. A stream that
    /// ends before the job does (after an hour, or cut by a proxy) is
    /// opened again.
    pub fn follow(
        &self,
        id: &ContentId,
        each: impl FnMut(&api::JobStatus),
    ) -> Result<api::JobStatus> {
        self.follow_until(id, each, |status| status.state.is_over())
    }

    /// [`Client::follow`] until `done` says so of a status (a job that
    /// asks for approval waits for its requester: `state == Approval`).
    pub fn follow_until(
        &self,
        id: &ContentId,
        mut each: impl FnMut(&api::JobStatus),
        done: impl Fn(&api::JobStatus) -> bool,
    ) -> Result<api::JobStatus> {
        let path = format!("/v1/jobs/{id}/events");
        let mut reopened = false;
        loop {
            if std::mem::replace(&mut reopened, true) {
                std::thread::sleep(REOPEN_PAUSE);
            }
            for status in self.events::<api::JobStatus>(&path, "status")? {
                let status = status?;
                each(&status);
                if done(&status) {
                    return Ok(status);
                }
            }
        }
    }
}

/// A job file's task as the API takes it (its own inputs uploaded).
pub fn submitted_task(t: &cairn_job::TaskSpec) -> cairn_api::SubmittedTask {
    cairn_api::SubmittedTask {
        args: t.args.clone(),
        outputs: t.outputs.clone(),
        seed: cairn_wire::hex(&t.seed),
        fuel: t.fuel,
        inputs: t
            .inputs
            .iter()
            .map(|f| SubmittedFile {
                name: f.name.clone(),
                id: f.id,
                size: f.size_bytes,
            })
            .collect(),
    }
}

/// A job file's submission, its module and inputs uploaded as these blobs.
pub fn submission(job: &Job, module: SubmittedFile, inputs: Vec<SubmittedFile>) -> Submission {
    Submission {
        name: job.name.clone(),
        runtime: job.module.runtime_name(),
        module,
        inputs,
        tasks: job.tasks().iter().map(submitted_task).collect(),
        limits: cairn_api::SubmittedLimits {
            fuel: job.limits.fuel,
            memory_bytes: job.limits.memory_bytes,
            wall_time_ms: job.limits.wall_time.as_millis() as u64,
            output_bytes: job.limits.output_bytes,
            stdout_bytes: job.limits.stdout_bytes,
            gpus: job.limits.gpus,
            gpu_memory_mib: job.limits.gpu_memory_mib,
        },
        budget_ucairn: job.market.budget_ucairn.unwrap_or(BUDGET_DEFAULT_UCAIRN),
        price_max_ucairn_per_gfuel: job
            .market
            .price_max_ucairn_per_gfuel
            .unwrap_or(PRICE_MAX_DEFAULT),
        verify: job.verify.into(),
        approval_window_s: job.approval.map(|w| w.as_secs()),
        stream: None,
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Every page of a paged answer, from `fetch(from)`, in task order: a
/// node whose pages do not move forward (a page again, or one going back)
/// is refused rather than followed for ever.
fn all_pages(
    path: &str,
    mut fetch: impl FnMut(u32) -> Result<api::JobResults>,
) -> Result<Vec<api::TaskRecord>> {
    let mut page = fetch(0)?;
    let mut results = std::mem::take(&mut page.results);
    while let Some(from) = page.next {
        if results.last().is_some_and(|r| r.task >= from) {
            return Err(Error::Unexpected {
                path: path.into(),
                what: "pages of results in task order",
            });
        }
        page = fetch(from)?;
        // Empty only if last: results can be forgotten between two pages
        // (a task reopened), never promised and not sent.
        let stalled = page.results.is_empty() && page.next.is_some();
        if stalled || page.results.first().is_some_and(|r| r.task < from) {
            return Err(Error::Unexpected {
                path: path.into(),
                what: "pages of results in task order",
            });
        }
        results.append(&mut page.results);
    }
    Ok(results)
}

fn short_type_name<T>() -> &'static str {
    std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("known answer")
}

/// A node's answer to `path`: its body, or the node's refusal.
fn body(path: &str, response: reqwest::blocking::Response) -> Result<Vec<u8>> {
    let status = response.status();
    let bytes = response.bytes().map_err(|_| Error::Unexpected {
        path: path.to_string(),
        what: "complete answer",
    })?;
    if !status.is_success() {
        return Err(refused(path, status, &bytes));
    }
    Ok(bytes.to_vec())
}

/// A node's answer to `path`: the `T` it holds, or the node's refusal.
fn answer<T: DeserializeOwned>(path: &str, response: reqwest::blocking::Response) -> Result<T> {
    let bytes = body(path, response)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Unexpected {
        path: path.to_string(),
        what: short_type_name::<T>(),
    })
}

/// A refusal: the API's reason, or the status alone when the body is not
/// the API's error (a proxy's page is not shown).
fn refused(path: &str, status: reqwest::StatusCode, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<api::ErrorBody>(body)
        .map_or_else(|_| status.to_string(), |b| b.error);
    Error::Refused {
        path: path.to_string(),
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_video_job_file_is_refused_until_its_clip_is_split_saying_how() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clip.mp4"), b"a clip").unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(
            &path,
            "[job]\nruntime = \"tool\"\nmodule = \"ffmpeg@5\"\n[video]\ninput = \"clip.mp4\"\n",
        )
        .unwrap();
        let refused = load_job(&path).unwrap_err().to_string();
        assert!(refused.contains("cairn job submit"), "{refused}");
    }

    fn page(tasks: &[u32], next: Option<u32>) -> api::JobResults {
        let provider = cairn_wire::Keypair::from_seed([1; 32]).public();
        api::JobResults {
            results: tasks
                .iter()
                .map(|&task| api::TaskRecord {
                    task,
                    provider,
                    digest: ContentId::of(&task.to_be_bytes()),
                    fuel_used: 1,
                    success: true,
                    outcome: String::new(),
                    outputs: Vec::new(),
                    stdout: None,
                    stderr: None,
                    receipt: String::new(),
                })
                .collect(),
            next,
        }
    }

    fn tasks(results: Result<Vec<api::TaskRecord>>) -> Result<Vec<u32>> {
        results.map(|r| r.into_iter().map(|r| r.task).collect())
    }

    #[test]
    fn every_page_is_read_in_order() {
        let mut asked = Vec::new();
        let read = all_pages("/r", |from| {
            asked.push(from);
            Ok(match from {
                0 => page(&[0, 2], Some(5)),
                5 => page(&[5, 9], Some(10)),
                _ => page(&[10], None),
            })
        });
        assert_eq!(tasks(read).unwrap(), [0, 2, 5, 9, 10]);
        assert_eq!(asked, [0, 5, 10]);
        let forgotten = all_pages("/r", |from| {
            Ok(if from == 0 {
                page(&[0], Some(1))
            } else {
                page(&[], None)
            })
        });
        assert_eq!(tasks(forgotten).unwrap(), [0]);
    }

    /// A `page_repeater` node answers every page with the first; a
    /// `backwards_pager` points back; an `empty_pager` promises more and
    /// sends nothing. Each is refused, not followed.
    #[test]
    fn pages_that_do_not_move_forward_are_refused() {
        let page_repeater = |_| Ok(page(&[0, 1], Some(2)));
        let backwards_pager = |from| {
            Ok(if from == 0 {
                page(&[3, 4], Some(1))
            } else {
                page(&[1], None)
            })
        };
        let empty_pager = |from: u32| Ok(page(&[], Some(from + 1)));
        for (name, read) in [
            ("page_repeater", all_pages("/r", page_repeater)),
            ("backwards_pager", all_pages("/r", backwards_pager)),
            ("empty_pager", all_pages("/r", empty_pager)),
        ] {
            assert!(
                matches!(read, Err(Error::Unexpected { .. })),
                "{name}: {:?}",
                tasks(read)
            );
        }
    }
}
