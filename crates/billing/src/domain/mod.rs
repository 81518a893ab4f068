//! The pure rules of billing: periods and anchors, money and overage
//! arithmetic, localized text. No IO, no clock: time is passed in.
