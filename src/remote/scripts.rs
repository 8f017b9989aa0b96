//! The Lua scripts that change a remote task's state, each one atomic.
//!
//! Every key of a namespace starts with the namespace's hash tag and the
//! [`PROTOCOL`] version (`{ns}:1:`, passed as `ARGV[1]`), so a script's keys
//! live on one node of a cluster;
//! `KEYS[1]` is always one of them, for routing. Times come from Redis's
//! clock (`TIME`), never a worker's.
//!
//! # Keys (after the `{ns}:<version>:` prefix)
//!
//! - `t:<id>`: the task's hash (see `SUBMIT` for its fields). Its `tok` is
//!   the running attempt's fencing token (`next_token`).
//! - `q:<name>`: the ids waiting for a worker that runs `name`;
//!   `bell:<name>`: one item per queued id, for workers to block on.
//! - `running`: a sorted set of running ids by lease expiry.
//! - `in:<id>`: messages in (`m`) and requests (`c`: stop, kill, close).
//! - `ww:<worker>`: a worker's doorbell: a copy of each `in` entry of the
//!   tasks it runs, with the entry's id and the one before it.
//!   Doorbells are kept by their owners (made if missing, their time to
//!   live renewed, `keep_bell`), never made by a ring: one whose owner is
//!   gone expires.
//! - `ev:<id>`: events out (`e`, numbered `n`), credit returned (`a`),
//!   requeues (`rq`) and the end (`end`, `d`).
//! - `n:<client>`: a client's doorbell: a copy of each `ev` entry of the
//!   tasks it watches, with the entry's id and the one before it.
//! - `w:<worker>`: a live worker's description, expiring with its lease;
//!   `workers`: the names of the workers seen, by when their description
//!   expires (each renewal drops the names past it; a worker that ends
//!   removes itself, its description and its doorbell, `LEAVE`).
//! - `refused`: the last claims refused (forged or from other code).
//! - `done`: how many tasks of each name ended.
//! - `queues`: the set of names ever queued (for inspection).
//! - `reaping`: the short lock of the worker that reaps (`REAP`).

use std::sync::LazyLock;

/// The version of what sidetask keeps in a namespace: its keys, their
/// fields and entries, and the scripts that change them. It is part of
/// every key (`{ns}:<version>:`, see [`Client::key_prefix`]), so that
/// clients and workers of two versions never share a record, where one
/// would misread what the other wrote: a worker of the old version goes
/// on with the old queues while the new version's are served by new
/// workers. Once a version of sidetask with it has been published, raise
/// it with any change to what is stored or how it is read (until then,
/// version 1's layout is still being settled); the test
/// `the_scripts_are_those_of_this_protocol` fails on any change to a
/// script, as a reminder.
///
/// [`Client::key_prefix`]: super::Client::key_prefix
pub(crate) const PROTOCOL: u32 = 1;

/// How long a doorbell lives after its last entry, in milliseconds (`$BELL_TTL`
/// in the scripts).
const BELL_TTL_MS: u64 = 3_600_000;

/// About how many entries a worker's doorbell keeps (`$WORKER_BELL_KEPT`).
const WORKER_BELL_KEPT: u64 = 10_000;

/// About how many entries a client's doorbell keeps (`$CLIENT_BELL_KEPT`).
const CLIENT_BELL_KEPT: u64 = 100_000;

/// How many events a task's stream keeps unless set (`$EVENTS_KEPT`).
pub(crate) const EVENTS_KEPT: usize = 10_000;

/// The functions scripts share, each after those it uses. A script gets
/// only those it uses, directly or through another ([`script`]): Redis
/// creates each function a script defines at every call of the script.
const HELPERS: &[(&str, &str)] = &[
    (
        "now_ms",
        r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#,
    ),
    (
        "next_token",
        r#"
-- The fencing token of a task's next attempt, after `tok` (its last, or
-- false): how many the task was given, and Redis's time in milliseconds,
-- so that a Redis restarted with older data than an attempt saw never
-- gives that attempt's token again.
local function next_token(tok, now)
  local n = tonumber(string.match(tok or '0', '^%d+')) or 0
  return (n + 1) .. '.' .. now
end
"#,
    ),
    (
        "make_bell",
        r#"
-- Makes doorbell `bell` (empty, with its time to live) if it is missing.
-- Its owner keeps it: a doorbell is never made by a ring (NOMKSTREAM), so
-- that one whose owner is gone expires for good. Returns 1 if it made it
-- (what rang meanwhile was lost: the owner reads its tasks' streams), else
-- 0.
local function make_bell(bell)
  if redis.call('EXISTS', bell) == 1 then return 0 end
  redis.call('XADD', bell, 'MAXLEN', 0, '*', 'made', 1)
  redis.call('PEXPIRE', bell, $BELL_TTL)
  return 1
end
"#,
    ),
    (
        "keep_bell",
        r#"
-- Makes doorbell `bell` if it is missing (see `make_bell`), else gives it
-- its time to live again. Returns 1 if it made it, else 0.
local function keep_bell(bell)
  if make_bell(bell) == 1 then return 1 end
  redis.call('PEXPIRE', bell, $BELL_TTL)
  return 0
end
"#,
    ),
    (
        "append",
        r#"
-- Appends `entries` (each a list of fields) to task `id`'s `stream`
-- (trimmed to `keep` entries, if given) and, if `bell` is a doorbell's
-- key, rings it with a copy of each (trimmed to about `kept`), each copy
-- with its id and the one before it (`prev`, for the first), unless the
-- doorbell is gone (its owner is). Returns the last id appended.
local function append(id, stream, keep, bell, kept, prev, entries)
  for _, fields in ipairs(entries) do
    local sid
    if keep then
      sid = redis.call('XADD', stream, 'MAXLEN', keep, '*', unpack(fields))
    else
      sid = redis.call('XADD', stream, '*', unpack(fields))
    end
    if bell then
      redis.call('XADD', bell, 'NOMKSTREAM', 'MAXLEN', '~', kept, '*', 'id', id, 'sid', sid, 'prev',
        prev, unpack(fields))
    end
    prev = sid
  end
  return prev
end
"#,
    ),
    (
        "append_events",
        r#"
-- Appends `entries` to the task's event stream and rings its client's
-- doorbell. `h`: the task's `maxev`, `last` and `cl`, as the caller read
-- them. Returns the last id appended, for the caller to record as `last`.
local function append_events(id, h, entries)
  local bell = nil
  if h[3] and h[3] ~= '' then bell = p .. 'n:' .. h[3] end
  return append(id, p .. 'ev:' .. id, h[1] or '$EVENTS_KEPT', bell, '$CLIENT_BELL_KEPT', h[2] or '0-0',
    entries)
end
"#,
    ),
    (
        "event",
        r#"
-- Appends one entry to the task's event stream (see `append_events`).
local function event(id, t, fields)
  local sid = append_events(id, redis.call('HMGET', t, 'maxev', 'last', 'cl'), {fields})
  redis.call('HSET', t, 'last', sid)
  return sid
end
"#,
    ),
    (
        "finish",
        r#"
-- Ends the task: its outcome in the hash and as the last event; every key
-- of it expires after the result time-to-live. `read` and `nread`, if
-- given: how far the body read, recorded with the end. `f`, if given: the
-- hash's fields of `FINISHING`, as the caller read them.
local function finish(id, t, kind, data, read, nread, f)
  f = f or redis.call('HMGET', t, $FINISHING)
  local sid = append_events(id, {f[4], f[5], f[6]},
    {{'end', kind, 'd', data, 'nr', nread or f[2] or '0'}})
  if read then
    redis.call('HSET', t, 'st', 'd', 'ok', kind, 'od', data, 'last', sid, 'read', read,
      'nread', nread)
  else
    redis.call('HSET', t, 'st', 'd', 'ok', kind, 'od', data, 'last', sid)
  end
  redis.call('HINCRBY', p .. 'done', f[1] or '?', 1)
  redis.call('ZREM', p .. 'running', id)
  local ttl = f[3] or '86400000'
  redis.call('PEXPIRE', t, ttl)
  -- An inbox with no entry was never made.
  if f[7] and f[7] ~= '0-0' then redis.call('PEXPIRE', p .. 'in:' .. id, ttl) end
  redis.call('PEXPIRE', p .. 'ev:' .. id, ttl)
end
"#,
    ),
    (
        "give_back",
        r#"
-- Takes the running attempt of task `id` away (a new token: whatever it
-- still writes is refused) and gives the task back: killed if a kill was
-- asked for, lost if a stop was (`stopping` says why) or no attempt is left
-- (`spent`), else queued again in front. `f`: the hash's `st`, `kill`,
-- `stop`, `att`, `max`, `name`, `wk` and `tok` (`GIVEN`), as the caller read
-- them.
local function give_back(id, t, f, now, stopping, spent)
  redis.call('HSET', t, 'tok', next_token(f[8], now))
  local att, max = tonumber(f[4]), tonumber(f[5])
  if f[2] == '1' then
    finish(id, t, 'killed', '')
  elseif f[3] == '1' then
    finish(id, t, 'lost', f[4] .. '|' .. stopping)
  elseif att < max then
    redis.call('HSET', t, 'st', 'q', 'wk', '')
    redis.call('ZREM', p .. 'running', id)
    redis.call('LPUSH', p .. 'q:' .. f[6], id)
    redis.call('RPUSH', p .. 'bell:' .. f[6], 1)
    event(id, t, {'rq', tostring(att)})
  else
    finish(id, t, 'lost', f[4] .. '|' .. spent)
  end
end
"#,
    ),
    (
        "append_inbox",
        r#"
-- Appends `entries` to the task's inbox stream (never trimmed) and, while
-- a worker runs the task, rings that worker's doorbell. `h`: the task's
-- `inlast`, `st` and `wk`, as the caller read them. Returns the last id
-- appended, for the caller to record as `inlast`.
local function append_inbox(id, h, entries)
  local bell = nil
  if h[2] == 'r' and h[3] and h[3] ~= '' then bell = p .. 'ww:' .. h[3] end
  return append(id, p .. 'in:' .. id, nil, bell, '$WORKER_BELL_KEPT', h[1] or '0-0', entries)
end
"#,
    ),
    (
        "inbox",
        r#"
-- Appends one entry to the task's inbox stream (see `append_inbox`).
local function inbox(id, t, fields)
  local sid = append_inbox(id, redis.call('HMGET', t, 'inlast', 'st', 'wk'), {fields})
  redis.call('HSET', t, 'inlast', sid)
  return sid
end
"#,
    ),
    (
        "advance",
        r#"
-- Records how far the body read; gives the client its credit back (an `a`
-- event) if it waits for it.
local function advance(id, t, read, nread)
  local was = tonumber(redis.call('HGET', t, 'nread') or '0')
  if tonumber(nread) <= was then return end
  redis.call('HSET', t, 'read', read, 'nread', nread)
  if redis.call('HGET', t, 'cw') == '1' then
    redis.call('HSET', t, 'cw', 0)
    event(id, t, {'a', nread})
  end
end
"#,
    ),
    (
        "holds",
        r#"
-- Whether `tok` is the running attempt's token.
local function holds(t, tok)
  local f = redis.call('HMGET', t, 'st', 'tok')
  return f[1] == 'r' and f[2] == tok
end
"#,
    ),
];

/// Whether Lua `code` calls function `name`.
fn calls(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + name.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after == Some('(')
    })
}

/// A script: the prefix (`p`, from `ARGV[1]`), the [`HELPERS`] that `body`
/// uses, then `body`.
fn script(body: &str) -> redis::Script {
    redis::Script::new(&script_text(body))
}

/// The text of [`script`]`(body)`.
fn script_text(body: &str) -> String {
    let mut wanted = vec![false; HELPERS.len()];
    // Each helper uses only earlier ones: from the last back, a helper is
    // wanted if the body or a wanted later one calls it.
    for i in (0..HELPERS.len()).rev() {
        let name = HELPERS[i].0;
        wanted[i] = calls(body, name)
            || HELPERS
                .iter()
                .zip(&wanted)
                .skip(i + 1)
                .any(|((_, code), &w)| w && calls(code, name));
    }
    let mut text = String::from("local p = ARGV[1]\n");
    for ((_, code), _) in HELPERS.iter().zip(&wanted).filter(|(_, w)| **w) {
        text.push_str(code);
    }
    text.push_str(body);
    text.replace("$BELL_TTL", &BELL_TTL_MS.to_string())
        .replace("$WORKER_BELL_KEPT", &WORKER_BELL_KEPT.to_string())
        .replace("$CLIENT_BELL_KEPT", &CLIENT_BELL_KEPT.to_string())
        .replace("$EVENTS_KEPT", &EVENTS_KEPT.to_string())
        .replace("$FINISHING", FINISHING)
        .replace("$GIVEN", GIVEN)
}

/// The fields of a task's hash that `give_back` reads, in its order.
const GIVEN: &str = "'st', 'kill', 'stop', 'att', 'max', 'name', 'wk', 'tok'";

/// The fields of a task's hash that `finish` reads, in its order.
const FINISHING: &str = "'name', 'nread', 'ttl', 'maxev', 'last', 'cl', 'inlast'";

/// How many tasks one call of [`SUBMIT`] takes at most (Lua's `unpack`
/// takes a few thousand values at most).
pub(crate) const SUBMIT_BATCH: usize = 256;

/// `KEYS[1]` = the first new task's hash. ARGV: prefix, name, fingerprint,
/// attempts, lease ms, ttl ms, inbox capacity, grace ms, timeout ms (0:
/// none), client (none if empty), events kept, then for each task its id
/// and argument (at most [`SUBMIT_BATCH`] tasks). Returns per task 1, or 0
/// if the id is taken.
///
/// The hash's other fields (`att`, `tok`, `wk`, `sent`, `nread`, `read`,
/// `inlast`, `last`, `evn`, `cur`, ...) are written when they change: a
/// missing one is read as zero (`0`, or `0-0` for a stream id).
pub(crate) static SUBMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local name = ARGV[2]
local took, ids, bells = {}, {}, {}
for i = 12, #ARGV - 1, 2 do
  local id = ARGV[i]
  local t = p .. 't:' .. id
  if redis.call('EXISTS', t) == 1 then
    table.insert(took, 0)
  else
    redis.call('HSET', t, 'name', name, 'fp', ARGV[3], 'arg', ARGV[i + 1], 'max', ARGV[4],
      'lease', ARGV[5], 'ttl', ARGV[6], 'cap', ARGV[7], 'grace', ARGV[8], 'tmo', ARGV[9],
      'cl', ARGV[10], 'maxev', ARGV[11], 'st', 'q')
    table.insert(took, 1)
    table.insert(ids, id)
    table.insert(bells, 1)
  end
end
if #ids > 0 then
  redis.call('RPUSH', p .. 'q:' .. name, unpack(ids))
  redis.call('RPUSH', p .. 'bell:' .. name, unpack(bells))
  redis.call('SADD', p .. 'queues', name)
  if ARGV[10] ~= '' then keep_bell(p .. 'n:' .. ARGV[10]) end
end
return took
"#,
    )
});

/// `KEYS[1]` = `running`. ARGV: prefix, worker, how many at most, then
/// pairs of name and fingerprint. Returns `{claimed, refused, made}`: each
/// claimed task as `{id, token, name, argument, inbox, grace, timeout,
/// read, stop, kill, attempt, lease, messages read, last inbox
/// entry}`, each refusal as `{id, why}`, and 1 if the worker's doorbell
/// had to be made (what rang it meanwhile was lost), else 0.
pub(crate) static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local worker = ARGV[2]
local k = tonumber(ARGV[3])
local now = now_ms()
local claimed, refused = {}, {}
local function refuse(id, why)
  table.insert(refused, {id, why})
  redis.call('LPUSH', p .. 'refused', worker .. ' refused ' .. id .. ': ' .. why)
  redis.call('LTRIM', p .. 'refused', 0, 99)
end
local i = 4
while i + 1 <= #ARGV and #claimed < k do
  local name, fp = ARGV[i], ARGV[i + 1]
  local q = p .. 'q:' .. name
  local n = redis.call('LLEN', q)
  while n > 0 and #claimed < k do
    n = n - 1
    local id = redis.call('LPOP', q)
    local t = p .. 't:' .. id
    local f = redis.call('HMGET', t, 'st', 'name', 'fp', 'att', 'lease', 'arg', 'cap', 'grace',
      'tmo', 'read', 'stop', 'kill', 'nread', 'inlast', 'tok')
    if not f[1] then
      refuse(id, 'no such task (pushed into the queue by hand?)')
    elseif f[1] ~= 'q' then
      -- Cancelled or claimed meanwhile: a stale entry.
    elseif f[2] ~= name then
      refuse(id, 'it is a `' .. tostring(f[2]) .. '` task in the queue of `' .. name .. '`')
      finish(id, t, 'crashed', 'refused: it was found in the queue of another task type')
    elseif f[3] ~= fp then
      -- Code of another version: left for a worker that has it.
      redis.call('RPUSH', q, id)
      redis.call('HSET', t, 'refusal', worker .. ' runs another version of `' .. name ..
        '` (type fingerprint ' .. fp .. ', the task was submitted with ' .. tostring(f[3]) .. ')')
      refuse(id, 'another version of the task type')
    else
      local tok = next_token(f[15], now)
      local att = tonumber(f[4] or '0') + 1
      local lease = tonumber(f[5])
      redis.call('HSET', t, 'st', 'r', 'tok', tok, 'att', att, 'wk', worker)
      redis.call('ZADD', p .. 'running', now + lease, id)
      table.insert(claimed, {id, tok, name, f[6], f[7], f[8], f[9], f[10] or '0-0', f[11] or '0',
        f[12] or '0', tostring(att), tostring(lease), f[13] or '0', f[14] or '0-0'})
    end
  end
  -- The bell rings while the queue holds a task: it keeps no more items
  -- than the queue holds ids, an empty queue's bell goes, and a queue left
  -- with tasks once the claim was full keeps an item (the wait before this
  -- claim may have taken the last), so that a worker may wait on the bell
  -- alone.
  local bell = p .. 'bell:' .. name
  local left = redis.call('LLEN', q)
  if left == 0 then
    redis.call('DEL', bell)
  elseif #claimed == k and redis.call('EXISTS', bell) == 0 then
    redis.call('RPUSH', bell, 1)
  else
    redis.call('LTRIM', bell, 0, left - 1)
  end
  i = i + 2
end
-- The doorbell that copies of the claimed tasks' messages ring is there
-- before the claim's answer (a message sent then would be lost otherwise).
local made = 0
if #claimed > 0 then made = make_bell(p .. 'ww:' .. worker) end
return {claimed, refused, made}
"#,
    )
});

/// `KEYS[1]` = `running`. ARGV: prefix, worker, the worker's description,
/// its lease ms, then pairs of id and token. Renews each lease, and keeps
/// the worker's doorbell; returns per task 0 (no longer this attempt's), 1
/// (run on), 2 (stop), 3 (kill), then 1 if the doorbell had to be made
/// (what rang it meanwhile was lost), else 0.
pub(crate) static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local out = {}
local i = 5
while i + 1 <= #ARGV do
  local id, tok = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', p .. 't:' .. id, 'st', 'tok', 'lease', 'stop', 'kill')
  if f[1] == 'r' and f[2] == tok then
    redis.call('ZADD', p .. 'running', now + tonumber(f[3]), id)
    if f[5] == '1' then table.insert(out, 3)
    elseif f[4] == '1' then table.insert(out, 2)
    else table.insert(out, 1) end
  else
    table.insert(out, 0)
  end
  i = i + 2
end
local kept = tonumber(ARGV[4]) * 2
redis.call('SET', p .. 'w:' .. ARGV[2], ARGV[3], 'PX', kept)
-- The workers by when their description expires: those past it go, so
-- that the set holds the live workers only, not every one ever started.
redis.call('ZADD', p .. 'workers', now + kept, ARGV[2])
redis.call('ZREMRANGEBYSCORE', p .. 'workers', '-inf', now)
table.insert(out, keep_bell(p .. 'ww:' .. ARGV[2]))
return out
"#,
    )
});

/// `KEYS[1]` = the task's hash. ARGV: prefix, id, token, the id of the last
/// message read, how many were read, then encoded events. Returns 1, or 0
/// if the token is no longer the running attempt's.
pub(crate) static EMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
-- `advance` and `event` in one read and one write of the hash.
local id = ARGV[2]
local t = KEYS[1]
local f = redis.call('HMGET', t, 'st', 'tok', 'nread', 'cw', 'evn', 'maxev', 'last', 'cl')
if f[1] ~= 'r' or f[2] ~= ARGV[3] then return 0 end
local set = {}
local entries = {}
if tonumber(ARGV[5]) > tonumber(f[3] or '0') then
  for _, v in ipairs({'read', ARGV[4], 'nread', ARGV[5]}) do table.insert(set, v) end
  if f[4] == '1' then
    for _, v in ipairs({'cw', '0'}) do table.insert(set, v) end
    table.insert(entries, {'a', ARGV[5]})
  end
end
local n = tonumber(f[5] or '0')
for i = 6, #ARGV do
  n = n + 1
  table.insert(entries, {'e', ARGV[i], 'n', tostring(n)})
end
if #entries > 0 then
  local last = append_events(id, {f[6], f[7], f[8]}, entries)
  for _, v in ipairs({'evn', tostring(n), 'last', last}) do table.insert(set, v) end
end
if #set > 0 then redis.call('HSET', t, unpack(set)) end
return 1
"#,
    )
});

/// `KEYS[1]` = the task's hash. ARGV: prefix, id, token, the id of the last
/// message read, how many were read. Returns 1, or 0 if fenced. Gives the
/// client its credit back (an `a` event) if it waits for it.
pub(crate) static ACK: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
if not holds(KEYS[1], ARGV[3]) then return 0 end
advance(id, KEYS[1], ARGV[4], ARGV[5])
return 1
"#,
    )
});

/// `KEYS[1]` = the task's hash. ARGV: prefix, id, token, outcome kind,
/// outcome data, the id of the last message read, how many were read.
/// Returns 1, or 0 if fenced.
pub(crate) static FINISH: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
-- The check and `finish`'s read in one.
local f = redis.call('HMGET', KEYS[1], $FINISHING, 'st', 'tok')
if f[8] ~= 'r' or f[9] ~= ARGV[3] then return 0 end
finish(id, KEYS[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7], f)
return 1
"#,
    )
});

/// `KEYS[1]` = the task's hash. ARGV: prefix, id, `stop` or `kill`.
/// Returns `gone`, `done`, `cancelled` (it was queued: it never runs) or
/// `running`.
pub(crate) static STOP: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
local t = KEYS[1]
local f = redis.call('HMGET', t, 'st', 'name')
if not f[1] then return 'gone' end
if f[1] == 'd' then return 'done' end
if f[1] == 'q' then
  redis.call('LREM', p .. 'q:' .. f[2], 0, id)
  finish(id, t, 'cancelled', '')
  return 'cancelled'
end
redis.call('HSET', t, 'stop', 1)
if ARGV[3] == 'kill' then redis.call('HSET', t, 'kill', 1) end
inbox(id, t, {'c', ARGV[3]})
return 'running'
"#,
    )
});

/// `KEYS[1]` = the task's hash. ARGV: prefix, id, then encoded messages.
/// Returns how many messages were ever sent, or -1 if the task is stopping
/// or ended (nothing was added), -2 if it is gone.
pub(crate) static SEND: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
local f = redis.call('HMGET', KEYS[1], 'st', 'stop', 'inlast', 'wk', 'sent')
if not f[1] then return -2 end
if f[1] == 'd' or f[2] == '1' then return -1 end
local sent = tonumber(f[5] or '0') + #ARGV - 2
if #ARGV < 3 then return sent end
local entries = {}
for i = 3, #ARGV do table.insert(entries, {'m', ARGV[i]}) end
local last = append_inbox(id, {f[3], f[1], f[4]}, entries)
redis.call('HSET', KEYS[1], 'inlast', last, 'sent', sent)
return sent
"#,
    )
});

/// `KEYS[1]` = the task's hash. Says the client waits for credit; returns
/// how many messages were read so far, or -2 if the task is gone.
pub(crate) static CREDIT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
redis.call('HSET', KEYS[1], 'cw', 1)
return tonumber(redis.call('HGET', KEYS[1], 'nread') or '0')
"#,
    )
});

/// `KEYS[1]` = the task's hash. ARGV: prefix, id. Says no message will come
/// any more.
pub(crate) static CLOSE: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
local st = redis.call('HGET', KEYS[1], 'st')
if not st or st == 'd' then return 0 end
-- Said by its entry, after the messages sent before it.
inbox(id, KEYS[1], {'c', 'close'})
return 1
"#,
    )
});

/// `KEYS[1]` = the task's hash. ARGV: the id of the event a handle took
/// last, and its number. Records them, while the task's record lasts. Sent
/// as the text of an `EVAL` (it needs no common prelude), so that it can go
/// on a connection that reads no answers.
pub(crate) const CURSOR: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'cur', ARGV[1], 'curn', ARGV[2])
end
return 1
"#;

/// `KEYS[1]` = the task's hash. ARGV: prefix, id, client. Makes the client
/// the one whose doorbell rings for the task; returns `{state, name,
/// fingerprint, cursor, attempts, inbox, sent, read, the cursor's event
/// number}`, or an empty list if there is no such task.
pub(crate) static ATTACH: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local f = redis.call('HMGET', KEYS[1], 'st', 'name', 'fp', 'cur', 'att', 'cap', 'sent', 'nread',
  'curn')
if not f[1] then return {} end
if f[1] ~= 'd' then
  redis.call('HSET', KEYS[1], 'cl', ARGV[3])
  keep_bell(p .. 'n:' .. ARGV[3])
end
return f
"#,
    )
});

/// `KEYS[1]` = `running`. ARGV: prefix. Under a short lock, ends or
/// requeues the tasks whose lease expired: killed if a kill was asked for,
/// lost if a stop was or no attempt is left, else queued again in front.
/// Returns how many it handled.
pub(crate) static REAP: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
if not redis.call('SET', p .. 'reaping', 1, 'NX', 'PX', 100) then return 0 end
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  local t = p .. 't:' .. id
  local f = redis.call('HMGET', t, $GIVEN)
  if f[1] ~= 'r' then
    redis.call('ZREM', KEYS[1], id)
  else
    local wk = tostring(f[7])
    give_back(id, t, f, now, 'its worker ' .. wk .. ' vanished while the task was stopping',
      'the lease of its worker ' .. wk .. ' expired and no attempt is left')
  end
end
return #ids
"#,
    )
});

/// `KEYS[1]` = the task's hash. ARGV: prefix, id, token, then the
/// attempt's end as `FINISH` takes it (kind, data, the id of the last
/// message read, how many were read). A closing worker gives back an
/// attempt whose child its stop's escalation killed: the task is queued
/// again while attempts are left, else it ends lost; if a stop or kill was
/// asked for meanwhile, the attempt's end is its outcome. Returns 1, or 0
/// if the token is no longer the running attempt's.
pub(crate) static GIVE_BACK: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local f = redis.call('HMGET', KEYS[1], $GIVEN)
if f[1] ~= 'r' or f[8] ~= ARGV[3] then return 0 end
if f[2] == '1' or f[3] == '1' then
  finish(ARGV[2], KEYS[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
else
  give_back(ARGV[2], KEYS[1], f, now_ms(), '',
    'its worker ' .. tostring(f[7]) .. ' closed before the task ended and no attempt is left')
end
return 1
"#,
    )
});

/// `KEYS[1]` = a doorbell. ARGV: prefix. Its owner keeps it; returns 1 if
/// it had to be made (see `keep_bell`).
pub(crate) static KEEP_BELL: LazyLock<redis::Script> =
    LazyLock::new(|| script("return keep_bell(KEYS[1])\n"));

/// `KEYS[1]` = a worker's doorbell. ARGV: prefix. Rings it with an entry
/// for no task (made first if it is missing, see `make_bell`); returns 1
/// if it had to be made.
pub(crate) static NUDGE: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local made = make_bell(KEYS[1])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', $WORKER_BELL_KEPT, '*', 'nudge', 1)
return made
"#,
    )
});

/// `KEYS[1]` = the worker's description. ARGV: prefix, worker. A worker
/// that ends takes its description, its doorbell and its name out of the
/// live workers (its tasks left running, if any, are reaped as those of a
/// vanished worker).
pub(crate) static LEAVE: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
redis.call('DEL', KEYS[1], p .. 'ww:' .. ARGV[2])
redis.call('ZREM', p .. 'workers', ARGV[2])
return 1
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_told_from_a_longer_name_and_a_mention() {
        assert!(calls("local x = event(id, t, f)", "event"));
        assert!(!calls("append_events(id, h, e)", "event"));
        assert!(!calls("-- one event, then", "event"));
        assert!(!calls("local events = 1", "event"));
    }

    #[test]
    fn a_script_gets_the_helpers_it_uses_and_those_they_use() {
        let helpers = |body: &str| {
            let mut wanted = Vec::new();
            for (name, _) in HELPERS {
                if script_text(body).contains(&format!("local function {name}(")) {
                    wanted.push(*name);
                }
            }
            wanted
        };
        assert_eq!(helpers("return now_ms()"), ["now_ms"]);
        assert_eq!(
            helpers("advance(id, t, r, n)"),
            ["append", "append_events", "event", "advance"]
        );
        assert_eq!(helpers("return 1"), Vec::<&str>::new());
    }

    /// Every script, for [`the_scripts_are_those_of_this_protocol`].
    fn all() -> [&'static redis::Script; 16] {
        [
            &SUBMIT, &CLAIM, &RENEW, &EMIT, &ACK, &FINISH, &STOP, &SEND, &CREDIT, &CLOSE, &ATTACH,
            &REAP, &KEEP_BELL, &NUDGE, &LEAVE, &GIVE_BACK,
        ]
    }

    /// Fails when a script changes: a change to what a namespace stores, or
    /// to how it is read, raises [`PROTOCOL`] (see there); then set
    /// `PINNED` to what this prints.
    #[test]
    fn the_scripts_are_those_of_this_protocol() {
        const PINNED: (u32, &str) = (1, "55d64ac4a57ac70f");
        // FNV-1a over the scripts' SHA-1s, in the order of `all`, then the
        // cursor's (sent as text).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let cursor = redis::Script::new(CURSOR);
        for script in all().into_iter().chain([&cursor]) {
            for byte in script.get_hash().bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let now = (PROTOCOL, format!("{hash:016x}"));
        assert_eq!(
            (PINNED.0, PINNED.1.to_owned()),
            now,
            "the scripts changed: if what a namespace stores, or how it is read, changed, raise \
             PROTOCOL; then pin ({}, {:?})",
            now.0,
            now.1
        );
    }

    #[test]
    fn every_constant_is_written_into_the_scripts() {
        for (name, _) in HELPERS {
            let text = script_text(&format!("{name}()"));
            assert!(
                !text.contains('$'),
                "a placeholder left in `{name}`:\n{text}"
            );
        }
        assert!(script_text("keep_bell()").contains(&format!("PEXPIRE', bell, {BELL_TTL_MS})")));
        assert!(script_text("append_inbox()").contains(&format!("'{WORKER_BELL_KEPT}'")));
        assert!(script_text("HMGET', t, $FINISHING)").contains(FINISHING));
    }
}
