//! Loyalty: an exact points ledger, earning rules, tiers, expiry, rewards, personalized offers and the next-best message.
