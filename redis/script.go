package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts. Each decision is one script, so it is atomic on the
// server and costs one round trip; Admit runs the rate, quota and lease
// parts of the others in one script.
//
// Numbers: Redis Lua has only doubles, exact for integers below 2^53.
// Unix nanoseconds (about 1.8e18) are not, so a script takes its clock as
// seconds and nanoseconds apart, keeps a GCRA theoretical arrival time as
// the decimal string of its Unix nanoseconds, and computes everything
// relative to now; New refuses rate limits whose tolerance would pass
// 2^52 ns (52 days). Lease expiries are Unix milliseconds (exact).
// Credits and units travel and are stored as "%.17g" strings, which round
// trip a float64 exactly; a script never returns a float as a number,
// since Redis would truncate it to an integer.
//
// A clock argument of "" means "read the server's TIME": the cluster's
// one clock, so replicas whose clocks disagree still agree on every
// bucket and lease.

// luaCommon holds the helpers every script shares.
const luaCommon = `
if redis.replicate_commands then redis.replicate_commands() end
local EPS = 1e-9

local function int(x) return string.format('%d', x) end
local function fmt(x) return string.format('%.17g', x) end
local function num(v) if v then return tonumber(v) end return 0 end
local function floor0(v) if v < EPS then return 0 end return v end

-- clock returns now as Unix seconds and nanoseconds: the caller's when
-- given, else the server's; and the slack in ms that keys live past the
-- state they hold. The server's clock needs only a second of slack;
-- the caller's instants need not follow any clock (a test may make a
-- thousand decisions at one instant), so their keys stay a minute more.
local function clock(s, ns)
  if s == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]), tonumber(t[2]) * 1000, 1000
  end
  return tonumber(s), tonumber(ns), 60000
end

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// luaRate is GCRA on a string key holding the theoretical arrival time
// (TAT) in Unix nanoseconds; a TAT at or before now is a full bucket.
const luaRate = `
-- gcra returns 1, next when a request fits (next: the new TAT, in ns
-- after now), else 0, tat, wait (tat: the TAT in ns after now; wait: how
-- long until one request fits).
local function gcra(key, s, ns, interval, tolerance)
  local tat = 0
  local v = redis.call('GET', key)
  if v then
    local n = #v
    local hs, hn = 0, tonumber(v)
    if n > 9 then
      hs = tonumber(string.sub(v, 1, n - 9))
      hn = tonumber(string.sub(v, n - 8))
    end
    local rel = (hs - s) * 1e9 + (hn - ns)
    if rel > 0 then tat = rel end
  end
  local nxt = tat + interval
  local wait = nxt - tolerance
  if wait > 0 then return 0, tat, wait end
  return 1, nxt, 0
end

-- gcra_take stores the TAT next ns after now; the key lives until the
-- bucket is full again, and slack ms more.
local function gcra_take(key, s, ns, nxt, slack)
  local t = ns + nxt
  local carry = math.floor(t / 1e9)
  redis.call('SET', key, string.format('%d%09d', s + carry, t - carry * 1e9),
    'PX', int(math.ceil(nxt / 1e6) + slack))
end
`

// luaLease keeps a key's leases in a sorted set: member the lease ID,
// score its expiry in Unix ms. A lease is live strictly before its
// expiry. The set expires (by the clock's slack) after its last lease, so
// idle keys vanish.
const luaLease = `
-- lease_clock returns now (floor) and now + ttl (ceil) in Unix ms.
local function lease_clock(s, ns, ttl)
  return s * 1000 + math.floor(ns / 1e6), s * 1000 + math.ceil((ns + ttl) / 1e6)
end

local function lease_room(key, now_ms, limit)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now_ms))
  return redis.call('ZCARD', key) < limit
end

local function lease_expire(key, now_ms, slack)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIRE', key, int(tonumber(top[2]) - now_ms + slack))
  end
end

local function lease_take(key, id, now_ms, exp_ms, slack)
  redis.call('ZADD', key, int(exp_ms), id)
  lease_expire(key, now_ms, slack)
end
`

// luaQuota keeps an org's counters in one hash (so one slot):
//
//	f                      lifetime free credits drawn
//	c:<period>             credits charged in the month
//	u:<period>:<model>     units of model in the month
//	h:<period>|<tuple>     held reservations with that period and tuple
//	cur                    the month of the last Reserve
//	n                      present when Reserve created the hash (not Load)
//
// A reservation is remembered by its fields (the tuple) so that Settle can
// tell one it knows from one made before the last Load; see Settle.
const luaQuota = `
local function over(used, x, limit)
  if x == 0 then return used >= limit - EPS end
  return used + x > limit + EPS
end

-- quota_check reads an org's counters and checks a reservation against
-- them: q.no is set when it is refused.
local function quota_check(org, a)
  local q = {
    free = num(redis.call('HGET', org, 'f')),
    mc = num(redis.call('HGET', org, 'c:' .. a.period)),
    mu = num(redis.call('HGET', org, 'u:' .. a.period .. ':' .. a.model)),
  }
  if a.usesfree and over(q.free, a.credits, a.grant) then
    q.no, q.unit, q.used, q.limit = 'billing_required', '', q.free, a.grant
  elseif a.climit > 0 and over(q.mc, a.credits, a.climit) then
    q.no, q.unit, q.used, q.limit = 'quota_exceeded', 'credits', q.mc, a.climit
  elseif a.ulimit > 0 and over(q.mu, a.units, a.ulimit) then
    q.no, q.unit, q.used, q.limit = 'quota_exceeded', 'units', q.mu, a.ulimit
  end
  return q
end

-- quota_month marks the month of a Reserve, dropping the months before
-- the previous one the first time it sees a new one.
local function quota_month(org, a)
  local cur = redis.call('HGET', org, 'cur')
  if cur == a.period then return end
  if not cur and redis.call('EXISTS', org) == 0 then
    redis.call('HSET', org, 'n', '1')
  end
  for _, f in ipairs(redis.call('HKEYS', org)) do
    local k = string.sub(f, 1, 2)
    if (k == 'c:' or k == 'u:' or k == 'h:') and string.sub(f, 3, 9) < a.prev then
      redis.call('HDEL', org, f)
    end
  end
  redis.call('HSET', org, 'cur', a.period)
end

local function quota_take(org, a, q)
  quota_month(org, a)
  if a.usesfree then redis.call('HSET', org, 'f', fmt(q.free + a.credits)) end
  redis.call('HSET', org, 'c:' .. a.period, fmt(q.mc + a.credits))
  if a.units ~= 0 then
    redis.call('HSET', org, 'u:' .. a.period .. ':' .. a.model, fmt(floor0(q.mu + a.units)))
  end
  redis.call('HINCRBY', org, 'h:' .. a.period .. '|' .. a.tuple, 1)
end

-- quota_args reads a reservation's arguments from ARGV[i..i+9].
local function quota_args(i)
  return {
    period = ARGV[i], prev = ARGV[i + 1], model = ARGV[i + 2],
    credits = tonumber(ARGV[i + 3]), units = tonumber(ARGV[i + 4]),
    usesfree = ARGV[i + 5] == '1', grant = tonumber(ARGV[i + 6]),
    climit = tonumber(ARGV[i + 7]), ulimit = tonumber(ARGV[i + 8]),
    tuple = ARGV[i + 9],
  }
end

-- quota_settle corrects org's counters for a settled reservation; see
-- Limiter.Settle. It returns 'lost' (changing nothing) when the marker
-- is gone.
local function quota_settle(org, marker, i)
  local loaded = redis.call('GET', marker)
  if not loaded then return 'lost' end
  local period, model = ARGV[i], ARGV[i + 1]
  local dc, du = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local free, held = ARGV[i + 6] == '1', 'h:' .. period .. '|' .. ARGV[i + 7]
  local grace = tonumber(ARGV[i + 8])
  local since = tonumber(string.match(loaded, '^%d+'))
  local n = tonumber(redis.call('HGET', org, held) or '0')
  if n > 1 then
    redis.call('HINCRBY', org, held, -1)
  elseif n == 1 then
    redis.call('HDEL', org, held)
  elseif grace > 0 and not redis.call('HGET', org, 'n') and server_ms() - since < grace then
    -- Made before the last Load, which does not count it: charge the
    -- actual cost whole.
    dc, du = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  end
  local c = 'c:' .. period
  redis.call('HSET', org, c, fmt(floor0(num(redis.call('HGET', org, c)) + dc)))
  if free then
    redis.call('HSET', org, 'f', fmt(floor0(num(redis.call('HGET', org, 'f')) + dc)))
  end
  if du ~= 0 then
    local u = 'u:' .. period .. ':' .. model
    redis.call('HSET', org, u, fmt(floor0(num(redis.call('HGET', org, u)) + du)))
  end
  return 'ok'
end
`

// rateScript: KEYS bucket; ARGV s, ns, interval, tolerance.
// Returns {allowed, rel, wait}.
const rateBody = `
local s, ns, slack = clock(ARGV[1], ARGV[2])
local ok, rel, wait = gcra(KEYS[1], s, ns, tonumber(ARGV[3]), tonumber(ARGV[4]))
if ok == 1 then gcra_take(KEYS[1], s, ns, rel, slack) end
return {ok, rel, wait}
`

// acquireScript: KEYS set; ARGV s, ns, ttl ns, limit, id. Returns 1 when
// the lease was taken, else 0.
const acquireBody = `
local s, ns, slack = clock(ARGV[1], ARGV[2])
local now_ms, exp_ms = lease_clock(s, ns, tonumber(ARGV[3]))
if not lease_room(KEYS[1], now_ms, tonumber(ARGV[4])) then return 0 end
lease_take(KEYS[1], ARGV[5], now_ms, exp_ms, slack)
return 1
`

// heartbeatScript: KEYS set; ARGV s, ns, ttl ns, id. Returns {0} when the
// lease is not held, else {1, expiry ms, now + ttl ms}.
const heartbeatBody = `
local s, ns, slack = clock(ARGV[1], ARGV[2])
local now_ms, exp_ms = lease_clock(s, ns, tonumber(ARGV[3]))
local sc = redis.call('ZSCORE', KEYS[1], ARGV[4])
if not sc then return {0} end
sc = tonumber(sc)
if sc <= now_ms then
  redis.call('ZREM', KEYS[1], ARGV[4])
  return {0}
end
local e = math.max(sc, exp_ms)
redis.call('ZADD', KEYS[1], int(e), ARGV[4])
lease_expire(KEYS[1], now_ms, slack)
return {1, e, exp_ms}
`

// inFlightScript: KEYS set; ARGV s, ns. Returns the live leases.
const inFlightBody = `
local s, ns = clock(ARGV[1], ARGV[2])
local now_ms = lease_clock(s, ns, 0)
return redis.call('ZCOUNT', KEYS[1], '(' .. int(now_ms), '+inf')
`

// reserveScript: KEYS org, marker; ARGV the quota arguments (quota_args).
// Returns {status, unit, used, limit}: status 'ok', 'lost',
// 'billing_required' or 'quota_exceeded'.
const reserveBody = `
if redis.call('EXISTS', KEYS[2]) == 0 then return {'lost'} end
local a = quota_args(1)
local q = quota_check(KEYS[1], a)
if q.no then return {q.no, q.unit, fmt(q.used), fmt(q.limit)} end
quota_take(KEYS[1], a, q)
return {'ok'}
`

// finishScript settles and releases. KEYS org and marker when settling,
// then the lease set when releasing. ARGV 1-9 the settlement (ARGV[1]
// "" when there is none): period, model, credits - reserved,
// units - reserved, credits, units, free, tuple, grace ms; ARGV[10] the
// lease ID ("" when there is none). Returns 'ok' or 'lost'.
const finishBody = `
local k, status = 1, 'ok'
if ARGV[1] ~= '' then
  status = quota_settle(KEYS[1], KEYS[2], 1)
  k = 3
end
if ARGV[10] ~= '' then redis.call('ZREM', KEYS[k], ARGV[10]) end
return status
`

// balanceScript: KEYS org, marker; ARGV period. Returns {'lost'} or
// {'ok', free, credits, model, units, ...}.
const balanceBody = `
if redis.call('EXISTS', KEYS[2]) == 0 then return {'lost'} end
local out = {'ok', '0', '0'}
local c, u = 'c:' .. ARGV[1], 'u:' .. ARGV[1] .. ':'
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if f == 'f' then
    out[2] = v
  elseif f == c then
    out[3] = v
  elseif string.sub(f, 1, #u) == u then
    out[#out + 1] = string.sub(f, #u + 1)
    out[#out + 1] = v
  end
end
return out
`

// markScript sets the loaded marker: the server's time in ms and its run
// ID (ARGV[1]), space-separated.
const markBody = `
redis.call('SET', KEYS[1], int(server_ms()) .. ' ' .. ARGV[1])
return 1
`

// deleteIfScript deletes KEYS[1] if it still holds ARGV[1].
const deleteIfBody = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`

// admitScript runs the rate, reservation and lease steps in one call.
// KEYS are those of the steps present, in order: bucket; org, marker;
// lease set. ARGV: 1-2 s, ns; 3-4 interval, tolerance ("" without a rate
// step); 5-14 the quota arguments (ARGV[5] "" without a reservation);
// 15-17 limit, id, ttl ns (ARGV[15] "" without a lease).
//
// Returns {status, allowed, rel, wait, unit, used, limit}: status 'ok',
// 'rate', 'lost', 'billing_required', 'quota_exceeded' or 'concurrency';
// allowed, rel and wait as rateScript's when the rate step ran. Nothing
// is written until every step has passed, but the rate token, which
// stays taken when a later step refuses (as with separate calls).
const admitBody = `
local s, ns, slack = clock(ARGV[1], ARGV[2])
local k = 1
local ok, rel, wait = 0, 0, 0
if ARGV[3] ~= '' then
  ok, rel, wait = gcra(KEYS[k], s, ns, tonumber(ARGV[3]), tonumber(ARGV[4]))
  if ok == 0 then return {'rate', ok, rel, wait} end
  gcra_take(KEYS[k], s, ns, rel, slack)
  k = k + 1
end
local org, a, q
if ARGV[5] ~= '' then
  org = KEYS[k]
  if redis.call('EXISTS', KEYS[k + 1]) == 0 then return {'lost', ok, rel, wait} end
  k = k + 2
  a = quota_args(5)
  q = quota_check(org, a)
  if q.no then return {q.no, ok, rel, wait, q.unit, fmt(q.used), fmt(q.limit)} end
end
if ARGV[15] ~= '' then
  local now_ms, exp_ms = lease_clock(s, ns, tonumber(ARGV[17]))
  if not lease_room(KEYS[k], now_ms, tonumber(ARGV[15])) then
    return {'concurrency', ok, rel, wait}
  end
  lease_take(KEYS[k], ARGV[16], now_ms, exp_ms, slack)
end
if org then quota_take(org, a, q) end
return {'ok', ok, rel, wait}
`

// scripts are the loaded scripts.
var (
	rateScript      = goredis.NewScript(luaCommon + luaRate + rateBody)
	acquireScript   = goredis.NewScript(luaCommon + luaLease + acquireBody)
	heartbeatScript = goredis.NewScript(luaCommon + luaLease + heartbeatBody)
	inFlightScript  = goredis.NewScript(luaCommon + luaLease + inFlightBody)
	reserveScript   = goredis.NewScript(luaCommon + luaQuota + reserveBody)
	finishScript    = goredis.NewScript(luaCommon + luaQuota + finishBody)
	balanceScript   = goredis.NewScript(luaCommon + luaQuota + balanceBody)
	markScript      = goredis.NewScript(luaCommon + markBody)
	deleteIfScript  = goredis.NewScript(deleteIfBody)
	admitScript     = goredis.NewScript(luaCommon + luaRate + luaLease + luaQuota + admitBody)

	allScripts = []*goredis.Script{rateScript, acquireScript, heartbeatScript, inFlightScript,
		reserveScript, finishScript, balanceScript, markScript, deleteIfScript, admitScript}
)
