//! Delivery: encrypted addresses, the delivery network, slots that never overbook, preferences and ranked options.
