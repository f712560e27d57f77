//! sched: the requester's task queue (pull dispatch, deadlines, retries, speculation), as a pure state machine.
