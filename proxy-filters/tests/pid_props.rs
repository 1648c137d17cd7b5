//! Properties of the adaptive limiter's PID controller: the limit never leaves its
//! bounds (so never reaches zero), whatever the gains and inputs; it falls to the
//! minimum under sustained overload and returns to the maximum once the signal is back
//! under target; a gain set that cannot converge is refused or clamped.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proxy_filters::adaptive::{
    controller::{AntiWindup, Gains, Input, Pid},
    AdaptiveConfig, MAX_KD, MAX_KI, MAX_KP,
};

fn gains() -> impl Strategy<Value = Gains> {
    (
        0.0..=MAX_KP,
        0.1..=20.0f64,
        0.0..=MAX_KD,
        0.0..=2.0f64,
        prop_oneof![
            Just(AntiWindup::BackCalculation),
            Just(AntiWindup::Clamping)
        ],
    )
        .prop_map(|(kp, ki, kd, derivative_time, anti_windup)| Gains {
            kp,
            ki,
            kd,
            derivative_time,
            anti_windup,
        })
}

fn bounds() -> impl Strategy<Value = (u32, u32, u32)> {
    (1u32..200, 0u32..100_000, any::<u32>()).prop_map(|(min, span, initial)| {
        let max = min.saturating_add(span);
        (min, max, initial)
    })
}

/// Any float, including the awkward ones.
fn wild() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..8.0f64,
        1 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-1.0),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    (
        proptest::option::weighted(0.9, wild()),
        prop_oneof![4 => 0.01..1.0f64, 1 => wild()],
        proptest::option::of(wild()),
        proptest::option::of(wild()),
    )
        .prop_map(|(pressure, dt, demand_cap, demand_floor)| Input {
            pressure,
            dt,
            demand_cap,
            demand_floor,
        })
}

/// Realistic history: pressures in [0, 4], intervals of 10 ms to 1 s, sometimes capped.
fn history() -> impl Strategy<Value = Vec<Input>> {
    prop::collection::vec(
        (
            proptest::option::weighted(0.9, 0.0..4.0f64),
            0.01..1.0f64,
            proptest::option::weighted(0.3, 0.0..1000.0f64),
            proptest::option::weighted(0.3, 0.0..100.0f64),
        )
            .prop_map(|(pressure, dt, demand_cap, demand_floor)| Input {
                pressure,
                dt,
                demand_cap,
                demand_floor,
            }),
        0..200,
    )
}

/// Steps needed to cross the whole range at the slowest integral rate, plus the time
/// for the derivative filter to forget the history.
fn settle_steps(g: &Gains, min: u32, max: u32, margin: f64, dt: f64) -> usize {
    let range = (f64::from(max) / f64::from(min)).ln() + 1.0;
    let integrate = range / (g.ki * margin * dt);
    let alpha = dt / (g.derivative_time + dt);
    let forget = 40.0 / alpha;
    (integrate + forget).ceil() as usize + 10
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn limit_never_leaves_bounds(
        g in gains(),
        (min, max, initial) in bounds(),
        inputs in prop::collection::vec(input(), 1..300),
    ) {
        let mut pid = Pid::new(g, min, max, initial);
        prop_assert!((min..=max).contains(&pid.limit()));
        for i in inputs {
            let s = pid.step(i);
            prop_assert!(s.limit >= 1, "starved to zero");
            prop_assert!((min..=max).contains(&s.limit), "{} outside [{min}, {max}] after {i:?}", s.limit);
            prop_assert!(s.i.is_finite() && s.p.is_finite() && s.d.is_finite() && s.error.is_finite());
        }
    }

    #[test]
    fn returns_to_max_when_signal_is_under_target(
        g in gains(),
        (min, max, initial) in bounds(),
        history in history(),
        under in 0.0..0.9f64,
    ) {
        let mut pid = Pid::new(g, min, max, initial);
        for i in history {
            pid.step(i);
        }
        let dt = 0.1;
        let n = settle_steps(&g, min, max, 1.0 - under, dt);
        let at_target = Input { pressure: Some(under), dt, demand_cap: None, demand_floor: None };
        // Within the settling time it reaches the maximum and then stays there.
        let mut reached = false;
        for _ in 0..n {
            reached |= pid.step(at_target).limit == max;
        }
        prop_assert!(reached, "limit {} after {n} steps (max {max})", pid.limit());
        for _ in 0..50 {
            prop_assert_eq!(pid.step(at_target).limit, max);
        }
    }

    #[test]
    fn falls_to_min_under_sustained_overload(
        g in gains(),
        (min, max, initial) in bounds(),
        history in history(),
        over in 1.1..10.0f64,
    ) {
        let mut pid = Pid::new(g, min, max, initial);
        for i in history {
            pid.step(i);
        }
        let dt = 0.1;
        // The error is at least 0.1 below zero (pressure is clamped at 4).
        let n = settle_steps(&g, min, max, 0.1, dt);
        let overloaded = Input { pressure: Some(over), dt, demand_cap: None, demand_floor: None };
        for _ in 0..n {
            pid.step(overloaded);
        }
        for _ in 0..50 {
            prop_assert_eq!(pid.step(overloaded).limit, min);
        }
    }

    #[test]
    fn demand_cap_and_floor_are_respected(
        g in gains(),
        (min, max, initial) in bounds(),
        caps in prop::collection::vec((0.0..4.0f64, 0.0..2000.0f64, 0.0..200.0f64), 1..200),
    ) {
        let mut pid = Pid::new(g, min, max, initial);
        for (pressure, cap, floor) in caps {
            let s = pid.step(Input { pressure: Some(pressure), dt: 0.1, demand_cap: Some(cap), demand_floor: Some(floor) });
            let hi = cap.clamp(f64::from(min), f64::from(max));
            let lo = floor.clamp(f64::from(min), hi);
            prop_assert!(f64::from(s.limit) <= hi.round() && f64::from(s.limit) >= lo.round(),
                "{} outside [{lo}, {hi}]", s.limit);
        }
    }

    /// Any gain triple is either refused naming its field, or accepted within bounds
    /// (clamped with a warning naming the field when absurd).
    #[test]
    fn config_refuses_or_clamps_gains(kp in wild(), ki in wild(), kd in wild()) {
        let mut c = AdaptiveConfig::default();
        c.pid.kp = kp;
        c.pid.ki = ki;
        c.pid.kd = kd;
        match proxy_filters::adaptive::AdaptiveConcurrencyLayer::new(&c) {
            Err(e) => prop_assert!(e.field().starts_with("pid."), "{e}"),
            Ok(layer) => {
                prop_assert!(kp.is_finite() && kp >= 0.0);
                prop_assert!(ki.is_finite() && ki > 0.0);
                prop_assert!(kd.is_finite() && kd >= 0.0);
                for (field, v, max) in [("pid.kp", kp, MAX_KP), ("pid.kd", kd, MAX_KD), ("pid.ki", ki, MAX_KI)] {
                    if v > max {
                        prop_assert!(layer.warnings().iter().any(|w| w.starts_with(field)));
                    }
                }
            }
        }
    }
}
