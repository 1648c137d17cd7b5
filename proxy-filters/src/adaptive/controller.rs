//! The PID controller that moves the admitted concurrency limit. Pure and synchronous:
//! it sees one normalised pressure per step and returns the new limit, so it can be
//! property-tested without a runtime.
//!
//! The controller works on the logarithm of the limit: a step changes the limit by a
//! factor, so it falls from a large maximum to a small capacity in a few steps and
//! climbs back just as fast, whatever the scale of `[min, max]`.
//!
//! - error `e = 1 - pressure`, pressure clamped to `[0, MAX_PRESSURE]` (1 = on target,
//!   positive error = headroom);
//! - proportional `kp * e`;
//! - integral `∫ ki * e dt`, kept from winding up by back-calculation (the integral
//!   absorbs the part of the output cut off by saturation) or by clamping (no
//!   integration further into saturation), and itself bounded by the output range;
//! - derivative on the measurement (`-kd * d pressure / dt`, so a target change gives no
//!   kick), smoothed by a first-order filter with time constant `derivative_time`.
//!
//! The output is clamped to `[ln min, ln upper]` where `upper` is the maximum, or the
//! demand cap of the step if lower (never below `min`), and `min >= 1`: the limit never
//! reaches zero. The bounds of a step may be narrowed by a demand cap (recent peak
//! in-flight times a headroom) and a demand floor (Little's law: the concurrency that
//! carried the best recent throughput at baseline latency); while one of them binds, the
//! integral sits on it.

use serde::{Deserialize, Serialize};

/// Pressure above this is treated as this (the error is at least `1 - MAX_PRESSURE`).
pub const MAX_PRESSURE: f64 = 4.0;

/// How the integral is kept from winding up while the output is saturated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AntiWindup {
    /// The integral takes back what saturation cut off the output.
    #[default]
    BackCalculation,
    /// No integration while the output is saturated in the direction of the error.
    Clamping,
}

/// Validated gains of the controller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gains {
    /// Proportional gain (log-limit per unit of error), `>= 0`.
    pub kp: f64,
    /// Integral gain (log-limit per unit of error per second), `> 0`.
    pub ki: f64,
    /// Derivative gain (log-limit per unit of pressure change per second), `>= 0`.
    pub kd: f64,
    /// Time constant of the derivative filter, seconds, `>= 0`.
    pub derivative_time: f64,
    /// Anti-windup method.
    pub anti_windup: AntiWindup,
}

impl Default for Gains {
    fn default() -> Self {
        Self {
            kp: 0.3,
            ki: 1.5,
            kd: 0.05,
            derivative_time: 0.2,
            anti_windup: AntiWindup::BackCalculation,
        }
    }
}

/// One controller input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Input {
    /// Measured over target of the most loaded signal (1.0 = on target); `None` when no
    /// signal had data (treated as no load).
    pub pressure: Option<f64>,
    /// Seconds since the previous step.
    pub dt: f64,
    /// An upper bound for this step's limit below the maximum (recent demand times the
    /// headroom), if any. Values below `min` count as `min`.
    pub demand_cap: Option<f64>,
    /// A lower bound for this step's limit above the minimum: the concurrency that
    /// carried the best recent throughput at baseline latency (Little's law), below
    /// which a smaller limit only loses goodput. Clamped into `[min, upper bound]`.
    pub demand_floor: Option<f64>,
}

/// What one step decided, with its terms (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Step {
    /// The new limit, in `[min, max]`.
    pub limit: u32,
    /// The error `1 - pressure`.
    pub error: f64,
    /// The proportional term.
    pub p: f64,
    /// The integral term (state).
    pub i: f64,
    /// The derivative term.
    pub d: f64,
}

/// The controller state.
#[derive(Clone, Debug)]
pub struct Pid {
    gains: Gains,
    min: f64,
    max: f64,
    integral: f64,
    prev_pressure: Option<f64>,
    d_filtered: f64,
    last: Step,
}

impl Pid {
    /// A controller between `min` and `max` (`1 <= min <= max`, swapped and raised to 1
    /// if not), starting at `initial` (clamped into the bounds).
    pub fn new(gains: Gains, min: u32, max: u32, initial: u32) -> Self {
        let (min, max) = (min.max(1).min(max.max(1)), max.max(min).max(1));
        let initial = initial.clamp(min, max);
        Self {
            gains,
            min: f64::from(min),
            max: f64::from(max),
            integral: f64::from(initial).ln(),
            prev_pressure: None,
            d_filtered: 0.0,
            last: Step {
                limit: initial,
                ..Step::default()
            },
        }
    }

    /// The latest step.
    pub fn last(&self) -> Step {
        self.last
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.last.limit
    }

    /// Restarts the controller at `limit` (clamped into the bounds): the integral sits
    /// there, the derivative forgets the past.
    pub fn reset(&mut self, limit: u32) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let limit = limit.clamp(self.min as u32, self.max as u32);
        self.integral = f64::from(limit).ln();
        self.prev_pressure = None;
        self.d_filtered = 0.0;
        self.last = Step {
            limit,
            ..Step::default()
        };
    }

    /// Advances the controller by one sample.
    pub fn step(&mut self, input: Input) -> Step {
        let g = self.gains;
        let pressure = input
            .pressure
            .filter(|p| !p.is_nan())
            .unwrap_or(0.0)
            .clamp(0.0, MAX_PRESSURE);
        let error = 1.0 - pressure;
        // Steps closer than 0.1 ms apart carry no rate information.
        let dt = if input.dt.is_finite() && input.dt >= 1e-4 {
            input.dt.min(60.0)
        } else {
            0.0
        };

        // Derivative on measurement, first-order low-pass filtered.
        if dt > 0.0 {
            let raw = self
                .prev_pressure
                .map_or(0.0, |prev| (pressure - prev) / dt);
            let alpha = dt / (g.derivative_time + dt);
            self.d_filtered += alpha * (raw - self.d_filtered);
            self.prev_pressure = Some(pressure);
        }
        let d = -g.kd * self.d_filtered;
        let p = g.kp * error;

        let cap = input
            .demand_cap
            .filter(|c| !c.is_nan())
            .map_or(self.max, |c| c.clamp(self.min, self.max));
        let upper = cap.ln();
        let floor = input
            .demand_floor
            .filter(|f| !f.is_nan())
            .map_or(self.min, |f| f.clamp(self.min, cap));
        let lower = floor.ln();

        let mut integral = self.integral + g.ki * error * dt;
        let unsaturated = integral + p + d;
        let output = unsaturated.clamp(lower, upper);
        match g.anti_windup {
            AntiWindup::BackCalculation => integral += output - unsaturated,
            AntiWindup::Clamping => {
                let pushing_up = unsaturated > upper && error > 0.0;
                let pushing_down = unsaturated < lower && error < 0.0;
                if pushing_up || pushing_down {
                    integral = self.integral;
                }
            }
        }
        if cap < self.max && unsaturated >= upper {
            // The demand cap binds, not the maximum: the integral follows demand, so the
            // limit can grow past it by the P and I terms as soon as demand does.
            integral = upper;
        } else if floor > self.min && unsaturated <= lower {
            // Likewise at the demand floor: no winding down below it.
            integral = lower;
        }
        self.integral = integral.clamp(lower, upper);

        // `output` is finite and within [ln min, ln max]; exp/round keep it in range but
        // clamp again so float rounding can never leave the bounds.
        let limit = output.exp().round().clamp(self.min, self.max);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let limit = (limit as u32).max(1);
        self.last = Step {
            limit,
            error,
            p,
            i: self.integral,
            d,
        };
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(pid: &mut Pid, pressure: f64) -> u32 {
        pid.step(Input {
            pressure: Some(pressure),
            dt: 0.1,
            demand_cap: None,
            demand_floor: None,
        })
        .limit
    }

    #[test]
    fn falls_under_overload_and_recovers() {
        let mut pid = Pid::new(Gains::default(), 2, 1000, 1000);
        for _ in 0..100 {
            step(&mut pid, 3.0);
        }
        assert_eq!(pid.limit(), 2);
        for _ in 0..150 {
            step(&mut pid, 0.5);
        }
        assert_eq!(pid.limit(), 1000);
    }

    #[test]
    fn settles_where_pressure_is_on_target() {
        // A plant whose pressure is limit / 40: on target at 40.
        let mut pid = Pid::new(Gains::default(), 1, 1000, 1000);
        let mut limit = 1000;
        for _ in 0..300 {
            limit = step(&mut pid, f64::from(limit) / 40.0);
        }
        assert!((36..=44).contains(&limit), "{limit}");
    }

    #[test]
    fn demand_cap_bounds_and_does_not_wind_up() {
        for anti_windup in [AntiWindup::BackCalculation, AntiWindup::Clamping] {
            let gains = Gains {
                anti_windup,
                ..Gains::default()
            };
            let mut pid = Pid::new(gains, 1, 1000, 10);
            for _ in 0..100 {
                let s = pid.step(Input {
                    pressure: Some(0.2),
                    dt: 0.1,
                    demand_cap: Some(20.0),
                    demand_floor: None,
                });
                assert!(s.limit <= 20);
            }
            // Overload right after: the limit falls from the cap, not from a wound-up max.
            let s = step(&mut pid, 2.0);
            assert!(s < 20, "{anti_windup:?}: {s}");
        }
    }

    #[test]
    fn demand_floor_holds_the_limit_up() {
        let mut pid = Pid::new(Gains::default(), 1, 1000, 100);
        for _ in 0..100 {
            let s = pid.step(Input {
                pressure: Some(3.0),
                dt: 0.1,
                demand_cap: None,
                demand_floor: Some(9.0),
            });
            assert!(s.limit >= 9);
        }
        assert_eq!(pid.limit(), 9);
        // Floor gone: it falls further at once, without wound-down integral to undo.
        assert!(step(&mut pid, 3.0) < 9);
    }

    #[test]
    fn odd_inputs_stay_in_bounds() {
        let mut pid = Pid::new(Gains::default(), 3, 7, 100);
        assert_eq!(pid.limit(), 7);
        for p in [f64::NAN, f64::INFINITY, -1.0, 1e300] {
            for dt in [f64::NAN, -1.0, 0.0, 1e9] {
                let s = pid.step(Input {
                    pressure: Some(p),
                    dt,
                    demand_cap: Some(f64::NAN),
                    demand_floor: Some(f64::NAN),
                });
                assert!((3..=7).contains(&s.limit));
            }
        }
    }
}
