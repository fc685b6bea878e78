// pricing-demand in JavaScript: the same formula, configuration keys and answers as the Rust
// `plugins/pricing-demand` (the behaviour tests in tests/pricing_behaviour.rs compare the two).
//
// price = base price × multiplier. The multiplier rises with the model's utilization above a threshold
// and with the recent booking rate per GPU, falls below 1 when the model is idle (nothing booked and no
// recent bookings), is smoothed towards the multiplier the host last quoted for the GPU, and stays
// within the configured bounds. The host applies its own guardrails afterwards.
//
// Configuration keys (all optional, numbers as strings):
// min_multiplier (0.8), max_multiplier (2.5), utilization_threshold (0.5), utilization_weight (1.0),
// booking_rate_weight (0.25), booking_rate_cap (2.0), idle_discount (0.1), smoothing (0.5).
//
// Built with every WASI feature disabled, the component imports nothing: no clock, no randomness, no
// console. Every fact arrives in the request.

const DEFAULTS = {
  min_multiplier: 0.8,
  max_multiplier: 2.5,
  utilization_threshold: 0.5,
  utilization_weight: 1.0,
  booking_rate_weight: 0.25,
  booking_rate_cap: 2.0,
  idle_discount: 0.1,
  smoothing: 0.5,
};

// Rust's `str::parse::<f64>` grammar: an optional sign, digits with at most one point (at least one
// digit), an optional exponent, or inf/infinity/nan. JavaScript's Number() accepts more ("0x10", "",
// "1_0" is rejected by both), so the text is checked first.
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function parseNumber(text) {
  const trimmed = text.trim();
  if (!DECIMAL.test(trimmed)) {
    return undefined;
  }
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : undefined;
}

function paramsFrom(config) {
  const params = { ...DEFAULTS };
  for (const [key, value] of config) {
    if (!Object.prototype.hasOwnProperty.call(DEFAULTS, key)) {
      continue;
    }
    const number = parseNumber(value);
    if (number === undefined) {
      throw `config ${key}: ${debugString(value)} is not a number`;
    }
    params[key] = number;
  }
  if (params.min_multiplier <= 0 || params.min_multiplier > params.max_multiplier) {
    throw 'config: need 0 < min_multiplier <= max_multiplier';
  }
  if (!(params.utilization_threshold >= 0 && params.utilization_threshold < 1)) {
    throw 'config: utilization_threshold must be in [0, 1)';
  }
  if (!(params.smoothing > 0 && params.smoothing <= 1)) {
    throw 'config: smoothing must be in (0, 1]';
  }
  return params;
}

// The text Rust's `{:?}` gives a string (quotes, the common escapes), so errors read the same.
function debugString(text) {
  const escaped = text.replace(/[\\"\n\r\t\0]/g, (c) => ESCAPES[c]);
  return `"${escaped}"`;
}
const ESCAPES = { '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\0': '\\0' };

// Rust's Display of an f64 for the error about the base price.
function displayNumber(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  return String(x);
}

// `x` with `decimals` digits after the point, as Rust's `format!("{x:.decimals$}")` writes it: the
// exact binary value rounded half to even. (`toFixed` rounds exact ties up: 0.125 → "0.13" where
// Rust writes "0.12".) Exact with BigInt: |x| = m × 2^e.
const FLOAT = new Float64Array(1);
const BITS = new BigUint64Array(FLOAT.buffer);

function fixed(x, decimals) {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) {
    return x.toFixed(decimals);
  }
  FLOAT[0] = x;
  const bits = BITS[0];
  const exponent = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const [m, e] = exponent === 0 ? [fraction, -1074] : [fraction | (1n << 52n), exponent - 1075];
  const scaled = m * 10n ** BigInt(decimals);
  let n;
  if (e >= 0) {
    n = scaled << BigInt(e);
  } else {
    const shift = BigInt(-e);
    n = scaled >> shift;
    const rest = scaled - (n << shift);
    const half = 1n << (shift - 1n);
    if (rest > half || (rest === half && (n & 1n) === 1n)) {
      n += 1n;
    }
  }
  const digits = n.toString().padStart(decimals + 1, '0');
  const cut = digits.length - decimals;
  const text = decimals > 0 ? `${digits.slice(0, cut)}.${digits.slice(cut)}` : digits;
  return x < 0 || Object.is(x, -0) ? `-${text}` : text;
}

// The multiplier the market conditions call for, before smoothing, and why.
function targetMultiplier(params, utilization, bookingsLastHour, totalGpus) {
  const u = Number.isFinite(utilization) ? Math.min(Math.max(utilization, 0), 1) : 0;
  if (u === 0 && bookingsLastHour === 0) {
    const m = 1 - params.idle_discount;
    return [
      m,
      `no GPU of this model is booked and none was booked in the last hour: idle discount ×${fixed(m, 2)}`,
    ];
  }
  const above = Math.max(u - params.utilization_threshold, 0) / (1 - params.utilization_threshold);
  const rate = Math.min(bookingsLastHour / Math.max(totalGpus, 1), params.booking_rate_cap);
  const m = 1 + params.utilization_weight * above + params.booking_rate_weight * rate;
  const reason =
    `${fixed(u * 100, 0)}% of this model is booked and ${bookingsLastHour} booking(s) started in the ` +
    `last hour: demand ×${fixed(m, 2)}`;
  return [m, reason];
}

// The whole formula: target, smoothing towards the previous multiplier, bounds.
function multiplier(params, market, previous) {
  let [m, reason] = targetMultiplier(
    params,
    market.utilization,
    market.bookingsLastHour,
    market.totalGpus,
  );
  if (previous != null && Number.isFinite(previous) && previous > 0) {
    const target = m;
    m = previous + params.smoothing * (target - previous);
    if (Math.abs(m - target) > 0.005) {
      reason += `, moving gradually from ×${fixed(previous, 2)}`;
    }
  }
  if (m > params.max_multiplier) {
    m = params.max_multiplier;
    reason += `, capped at ×${fixed(m, 2)}`;
  } else if (m < params.min_multiplier) {
    m = params.min_multiplier;
    reason += `, floored at ×${fixed(m, 2)}`;
  }
  return [m, reason];
}

// Rust's f64::round: halves away from zero (Math.round rounds -0.5 to -0).
function roundAway(x) {
  return Math.sign(x) * Math.round(Math.abs(x));
}

function quoteOne(params, request) {
  const base = request.gpu.basePrice;
  if (!Number.isFinite(base) || base < 0) {
    throw `base price ${displayNumber(base)} is not a valid price`;
  }
  const [m, reason] = multiplier(params, request.market, request.previousMultiplier);
  const rounded = roundAway(m * 10_000) / 10_000;
  const pricePerHour = roundAway(base * rounded * 10_000) / 10_000;
  return {
    pricePerHour,
    multiplier: rounded,
    explanation: `${reason}; ${fixed(pricePerHour, 4)} AITBC/h`,
  };
}

function messageOf(thrown) {
  return typeof thrown === 'string' ? thrown : String(thrown);
}

export const pricing = {
  // An `err` result is a thrown value.
  quote(config, request) {
    return quoteOne(paramsFrom(config), request);
  },

  quoteBatch(config, requests) {
    let params;
    try {
      params = paramsFrom(config);
    } catch (e) {
      return requests.map(() => ({ tag: 'err', val: messageOf(e) }));
    }
    return requests.map((request) => {
      try {
        return { tag: 'ok', val: quoteOne(params, request) };
      } catch (e) {
        return { tag: 'err', val: messageOf(e) };
      }
    });
  },
};
