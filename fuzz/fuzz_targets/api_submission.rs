//! The JSON body of `POST /v1/jobs`, as a node's API reads it: decoded,
//! then checked against the job file's rules before anything is stored.
#![no_main]

use cairn_proto::Submission;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(submission) = serde_json::from_slice::<Submission>(data) else {
        return;
    };
    if submission.check().is_err() {
        return;
    }
    // What the requester does next with an accepted submission: parse the
    // seeds it carries (file ids were parsed as it was read), and
    // serialize it for the job's identity and record (which must read back
    // as the same job after a restart).
    for task in &submission.tasks {
        let _ = cairn_wire::parse_hex32(&task.seed, "task seed");
    }
    let json = serde_json::to_vec(&submission).expect("a submission serializes");
    let back: Submission = serde_json::from_slice(&json).expect("a serialized submission reads");
    assert_eq!(back, submission);
});
