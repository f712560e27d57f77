//! market: orders, bids, pricing policies, provider selection and leases, as a pure state machine.
