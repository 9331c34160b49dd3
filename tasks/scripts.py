"""Lua scripts: the decisions that must be atomic in Redis, whatever races between workers."""

from __future__ import annotations

# Sending a parked step's resume message is part of these scripts, not a later round trip:
# a process that dies right after the last answer was journaled must not lose the resume.
# RESUME: record the framed resume message as in flight (due now) and push it onto its queue.
RESUME = """
local function resume(inflight, task, record, queue, envelope)
  local t = redis.call('TIME')
  local due = string.format('%.3f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
  redis.call('HSET', inflight, task, '[' .. due .. ',' .. record .. ']')
  redis.call('LPUSH', queue, envelope)
end
"""

# KEYS: journal, wait, inflight, resume's queue list.
# ARGV: resume message JSON, ttl, resume task id, resume envelope, call ids...
# Registers a suspended invocation; pending = calls not answered yet. When none is pending any
# more (answers raced in before the registration) it sends the resume now and returns 1.
PARK = (
    RESUME
    + """
local pending = 0
for i = 5, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then pending = pending + 1 end
end
if pending == 0 then
  redis.call('DEL', KEYS[2])
  resume(KEYS[3], ARGV[3], ARGV[1], KEYS[4], ARGV[4])
  return 1
end
redis.call('HSET', KEYS[2], 'pending', pending, 'resume', ARGV[1], 'task', ARGV[3],
  'queue', KEYS[4], 'envelope', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 0
"""
)

# ANSWER: journal a parked call's answer once (HSETNX: a duplicate answer is ignored) and, when
# it was the last pending call, send the resume — exactly once. Returns a wait record's resume
# message when it was parked by a Baton that did not frame resumes yet (the caller sends it).
ANSWER = (
    RESUME
    + """
local function answer(journal, wait, inflight, call, entry)
  if redis.call('EXISTS', journal) == 0 then return false end  -- the step already finished
  if redis.call('HSETNX', journal, call, entry) == 0 then return false end
  if redis.call('EXISTS', wait) == 0 then return false end
  local left = redis.call('HINCRBY', wait, 'pending', -1)
  if left > 0 then return false end
  local w = redis.call('HMGET', wait, 'resume', 'task', 'queue', 'envelope')
  redis.call('DEL', wait)
  if not w[4] then return w[1] end  -- parked by an older Baton: the caller sends it
  resume(inflight, w[2], w[1], w[3], w[4])
  return false
end
"""
)

# KEYS: journal, wait, inflight[, spans].  ARGV: call id, answer JSON, answering task id (or
# ""), the answering attempt's span JSON (with the spans key; written whatever else happens).
# The answering task is done with its message; its span is pushed; then ANSWER.
COMPLETE = (
    ANSWER
    + """
if ARGV[3] ~= '' then redis.call('HDEL', KEYS[3], ARGV[3]) end
if KEYS[4] then redis.call('RPUSH', KEYS[4], ARGV[4]) end
return answer(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
"""
)

# KEYS: journal, buffer, counts.  ARGV: call id, tag, envelope JSON, ttl, (tag, count) pairs...
# collect_events: buffer the event; when every expected type is in, take them (oldest first),
# keep the rest, and journal the answer so a replay gets the same. Exactly one caller wins.
COLLECT = """
local j = redis.call('HGET', KEYS[1], ARGV[1])
if j then return j end
redis.call('RPUSH', KEYS[2], ARGV[2] .. '\\n' .. ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
local need = {}
for i = 5, #ARGV, 2 do
  local have = tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0')
  if have < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[1], '{"ok":null}')
    return '{"ok":null}'
  end
  need[ARGV[i]] = tonumber(ARGV[i + 1])
end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local taken, rest = {}, {}
for _, item in ipairs(items) do
  local cut = string.find(item, '\\n', 1, true)
  local tag = string.sub(item, 1, cut - 1)
  if need[tag] and need[tag] > 0 then
    need[tag] = need[tag] - 1
    table.insert(taken, string.sub(item, cut + 1))
  else
    table.insert(rest, item)
  end
end
redis.call('DEL', KEYS[2])
for i = 1, #rest, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(rest, i, math.min(i + 999, #rest)))
end
for i = 5, #ARGV, 2 do redis.call('HINCRBY', KEYS[3], ARGV[i], -tonumber(ARGV[i + 1])) end
local answer = '{"ok":[' .. table.concat(taken, ',') .. ']}'
redis.call('HSET', KEYS[1], ARGV[1], answer)
return answer
"""

# KEYS: state lock, store, journal.  ARGV: lock token, call id, journal entry JSON, ttl,
# n, then n removed fields, then field/value pairs. Commits an ``edit_state`` block: its
# changes and the journal entry that makes a replay write nothing, both or neither, and only
# while the editor still holds the lock (it expired: 0, and nothing is written).
EDIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[5])
for i = 6, 5 + n, 500 do  -- in chunks: unpack has a limit of a few thousand values
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 499, 5 + n)))
end
for i = 6 + n, #ARGV, 1000 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: state lock.  ARGV: lock token. Gives the lock back if it is still ours.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: run hash, event stream.  ARGV: final status, timestamp, end entry JSON, field, value.
# Moves a running run to its final status and logs the end entry, both or neither; returns 0
# if the run had already ended (first end wins).
FINISH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated', ARGV[2], ARGV[4], ARGV[5])
local kind = ARGV[1] == 'completed' and 'stop' or ARGV[1]
redis.call('XADD', KEYS[2], '*', 'k', kind, 'e', ARGV[3])
return 1
"""

# KEYS: run hash, idempotency key (the run hash again when there is none).
# ARGV: deadline (Redis server time, seconds), run id, key ttl, commands JSON (tasks.batch).
# A submit, all or nothing: nothing at all once the deadline passed (the client has given up
# and said so: commands that reach a frozen Redis late must not create a run nobody knows of).
# Returns {0, ''} too late; {2, run id} the key names an existing run; {1, run id} created
# (also when a retried script finds its own run already there).
CREATE = """
local t = redis.call('TIME')
if tonumber(t[1]) + tonumber(t[2]) / 1000000 > tonumber(ARGV[1]) then return {0, ''} end
if KEYS[2] ~= KEYS[1] then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {2, existing} end
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, ARGV[2]} end
for _, c in ipairs(cjson.decode(ARGV[4])) do redis.call(unpack(c)) end
return {1, ARGV[2]}
"""

# KEYS: in-flight hashes; ARGV: task id, SHA-1 of the record as read, new record (a triple
# per key). Rewrites a record only if unchanged: never resurrects the record of a finished task.
RESTAMP = """
local n = 0
for i, key in ipairs(KEYS) do
  local j = 3 * (i - 1)
  local old = redis.call('HGET', key, ARGV[j + 1])
  if old and redis.sha1hex(old) == ARGV[j + 2] then
    redis.call('HSET', key, ARGV[j + 1], ARGV[j + 3])
    n = n + 1
  end
end
return n
"""

# KEYS: the timer sorted set.  ARGV: at most how many entries to release.
# Releases the due timers (score <= Redis's own clock now), in one atomic step, so several
# pumps never release one twice: a delayed message (member ``queue key \n envelope``) is pushed
# onto its queue list; a sleep's answer (member ``\t`` + JSON ``[journal, wait, inflight, call
# id, entry]``) is journaled by ANSWER, the last one resuming its step. Returns how many. The
# keys it writes are named by the members, not by KEYS (one Redis, as every Baton script).
RELEASE = (
    ANSWER
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now),
  'LIMIT', 0, tonumber(ARGV[1]))
if #due == 0 then return 0 end
for _, member in ipairs(due) do
  if string.byte(member, 1) == 9 then
    local a = cjson.decode(string.sub(member, 2))
    answer(a[1], a[2], a[3], a[4], a[5])
  else
    local nl = string.find(member, '\\n', 1, true)
    if nl then
      redis.call('LPUSH', string.sub(member, 1, nl - 1), string.sub(member, nl + 1))
    end
  end
end
redis.call('ZREM', KEYS[1], unpack(due))
return #due
"""
)

# KEYS: a rate limit's state (hash ``limit:rate:{tool}:{key}``: ``tat`` the next free slot,
# ``shift`` the backlog absorbed so far, ``next`` when the next start is due), one call
# attempt's reservation (``limit:res:{run}:{call}:{attempt}``).
# ARGV: interval (seconds), how long state and reservations outlive their slots (seconds), how
# early a call may come back for its slot (seconds), tolerance (seconds, < the interval).
# GCRA without burst, in two parts. Order: a new reservation's slot is max(tat, now - shift)
# and tat moves one interval past it, so slots are handed out in the order calls ask (FIFO per
# key); an attempt that holds one (redelivered, or back from waiting) keeps it and is not
# charged again. Rate: a start is conforming when now >= next - tolerance, and moves ``next`` to
# max(next, now) + interval (the classic GCRA test: over any stretch the starts keep to the
# rate, two starts are at least interval - tolerance apart, and a start a few ms late is made
# up by the next one). A call starts when both hold. One that starts more than an interval
# past its slot (a backlog of deliveries) adds its lateness to ``shift``, moving every
# outstanding slot as much: the calls a backlog made late start an interval apart, in order,
# instead of all waking for the same turn.
# Returns {due, now (Redis's clock), 1 if it starts now else 0}.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local early, tolerance = tonumber(ARGV[3]), tonumber(ARGV[4])
local st = redis.call('HMGET', KEYS[1], 'tat', 'shift', 'next')
local tat, shift = tonumber(st[1] or '0'), tonumber(st[2] or '0')
local nxt = tonumber(st[3] or '0')
local slot = tonumber(redis.call('GET', KEYS[2]) or '')
if not slot then
  slot = math.max(tat, now - shift)
  tat = slot + interval
  redis.call('SET', KEYS[2], string.format('%.6f', slot), 'EX',
    math.ceil(slot + shift - now) + keep)
end
local due = math.max(slot + shift - early, nxt - tolerance)
local starts = 0
if due <= now then
  if now - (slot + shift) > interval then shift = now - slot end
  nxt = math.max(nxt, now) + interval
  starts = 1
end
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat), 'shift',
  string.format('%.6f', shift), 'next', string.format('%.6f', nxt))
redis.call('EXPIRE', KEYS[1], math.ceil(math.max(tat + shift, nxt) - now) + keep)
return {string.format('%.6f', due), string.format('%.6f', now), starts}
"""

# Concurrency limits (``tasks.tool_task``): per tool and key, a sorted set of holders (``base
# :holders``: task id -> lease expiry by Redis's clock) and a FIFO list of waiting framed
# messages (``base:waiting``: ``task id \n queue key \n envelope``); the index hash (KEYS[1])
# names every base in use with its ``"N lease"``. ``fill`` drops expired holders and hands each
# free permit to the oldest waiting message: the permit is added for its task id (so another
# call cannot take it before it arrives) and the message is pushed onto its queue list.
CONCURRENCY = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fill(index, base, n, lease, now)
  local holders, waiting = base .. ':holders', base .. ':waiting'
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', string.format('%.6f', now))
  local moved = 0
  while redis.call('ZCARD', holders) < n do
    local entry = redis.call('LPOP', waiting)
    if not entry then break end
    local a = string.find(entry, '\\n', 1, true)
    local b = string.find(entry, '\\n', a + 1, true)
    redis.call('ZADD', holders, string.format('%.6f', now + lease), string.sub(entry, 1, a - 1))
    redis.call('LPUSH', string.sub(entry, a + 1, b - 1), string.sub(entry, b + 1))
    moved = moved + 1
  end
  if redis.call('EXISTS', holders) == 0 and redis.call('EXISTS', waiting) == 0 then
    redis.call('HDEL', index, base)
  end
  return moved
end
"""

# KEYS: concurrency index, the run's in-flight hash (not on a cluster: its caller writes it).
# ARGV: base, N, lease (seconds), this task id, the waiting message's (new) task id, its
# in-flight record, its queue key, its envelope.
# Takes a permit: one already held by this task id (a redelivery, or a message a permit was
# handed to) is renewed; else a free one is taken. Else the message waits: its re-framed copy
# (a new task id, recorded in flight here) joins the waiting list, and this delivery is
# finished (its in-flight record deleted). Returns 1 to run, 0 waiting.
TAKE = (
    CONCURRENCY
    + """
local now = clock()
local base, n, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local holders = base .. ':holders'
fill(KEYS[1], base, n, lease, now)
if redis.call('ZSCORE', holders, ARGV[4]) or redis.call('ZCARD', holders) < n then
  redis.call('ZADD', holders, string.format('%.6f', now + lease), ARGV[4])
  redis.call('HSET', KEYS[1], base, ARGV[2] .. ' ' .. ARGV[3])
  return 1
end
if KEYS[2] then redis.call('HSET', KEYS[2], ARGV[5], ARGV[6]) end
redis.call('RPUSH', base .. ':waiting', ARGV[5] .. '\\n' .. ARGV[7] .. '\\n' .. ARGV[8])
redis.call('HSET', KEYS[1], base, ARGV[2] .. ' ' .. ARGV[3])
if KEYS[2] then redis.call('HDEL', KEYS[2], ARGV[4]) end
return 0
"""
)

# KEYS: concurrency index.  ARGV: base, N, lease (seconds), the holding task id.
# Gives a permit back (at the end of an attempt) and hands the free permits to waiting
# messages. Returns how many were handed on.
GIVE = (
    CONCURRENCY
    + """
redis.call('ZREM', ARGV[1] .. ':holders', ARGV[4])
return fill(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), clock())
"""
)

# KEYS: concurrency index. Every limit in use: drop expired leases (a worker that died holding
# a permit) and hand the permits to waiting messages. Run by the timer pumps; returns how many
# were handed on.
RECLAIM = (
    CONCURRENCY
    + """
local now = clock()
local all = redis.call('HGETALL', KEYS[1])
local moved = 0
for i = 1, #all, 2 do
  local sp = string.find(all[i + 1], ' ', 1, true)
  local n = tonumber(string.sub(all[i + 1], 1, sp - 1))
  local lease = tonumber(string.sub(all[i + 1], sp + 1))
  moved = moved + fill(KEYS[1], all[i], n, lease, now)
end
return moved
"""
)

# The outbox (``tasks.relay``). KEYS: the outbox, one relay's relaying list. ARGV: how many.
# Moves up to ARGV[1] of the oldest entries (the tail) onto the relaying list, atomically, and
# returns them oldest first.
RELAY_TAKE = """
local n = tonumber(ARGV[1])
local items = redis.call('LRANGE', KEYS[1], -n, -1)
if #items == 0 then return {} end
redis.call('LTRIM', KEYS[1], 0, -#items - 1)
local oldest_first = {}
for i = #items, 1, -1 do
  redis.call('LPUSH', KEYS[2], items[i])
  oldest_first[#oldest_first + 1] = items[i]
end
return oldest_first
"""

# KEYS: the outbox, a dead relay's relaying list (oldest at its tail too). Puts its entries
# back at the outbox's tail, where they are taken next, in their order; returns how many.
RELAY_RETURN = """
local items = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 1, #items do
  redis.call('RPUSH', KEYS[1], items[i])
end
redis.call('DEL', KEYS[2])
return #items
"""
