-- The publish script: one batch of records and dead letters, atomically and once per sequence number.
-- relay/publish/script.py fills in the field names (the names between double braces) from relay/common/stream.py.
-- KEYS: records stream, dead-letter stream, producer key
-- ARGV: seq, ttl, catcher, schema, n_records, n_dead, max_length, policy, pipelined,
--       token, first (the producer token and the number of the batch's first record),
--       dead_max_length (0: the dead-letter stream is never trimmed),
--       n_records x (record, client, received),
--       n_dead x (raw, reason, client, received)
-- Returns {written, shed, held, dead_trimmed}: held records (policy block, stream
-- full) were not written and must be sent again in a later batch; dead_trimmed:
-- the oldest dead letters removed to keep that stream near dead_max_length.
-- {-1, 0, held, 0}: this seq was applied before (held: what it held then).
-- {-2, 0, 0, 0}: not applied, the batch before it in the pipeline was not
-- (applying it would reorder records).
--
-- The producer key holds "last:last_held:run_start:run_held": the last applied
-- seq and how many records it held, and where the current run of holding
-- batches started (0: none) with what that first batch held.  A pipelined
-- batch was sent before its sender knew the outcome of the one before; if
-- that one held records, it is held whole, so that held records go first.
local seq, n_records = tonumber(ARGV[1]), tonumber(ARGV[5])
local pipelined = ARGV[9] == '1'
local last, last_held, run_start, run_held = 0, 0, 0, 0
local state = redis.call('GET', KEYS[3])
if state then
  local a, b, c, d = string.match(state, '^(%d+):(%d+):(%d+):(%d+)$')
  if not a then
    return redis.error_reply('LOGRELAY_STATE producer key ' .. KEYS[3] .. ' holds ' .. string.sub(state, 1, 40))
  end
  last, last_held, run_start, run_held = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if seq <= last then
    -- Retries only ever repeat batches of the sender's current pipeline:
    -- a repeat of the run's first batch held run_held, later ones all.
    local held = 0
    if run_start > 0 and seq >= run_start then
      held = (seq == run_start) and run_held or n_records
    end
    return {-1, 0, held, 0}
  end
end
if pipelined and (not state or seq ~= last + 1) then
  return {-2, 0, 0, 0}
end
-- Fail before the first write: a script stopped halfway keeps its writes.
for k = 1, 2 do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= 'stream' then
    return redis.error_reply('WRONGTYPE key ' .. KEYS[k] .. ' is a ' .. t .. ', not a stream')
  end
end
local catcher, schema = ARGV[3], ARGV[4]
local n_dead = tonumber(ARGV[6])
local max_length, policy = tonumber(ARGV[7]), ARGV[8]
local behind_held = pipelined and last_held > 0
local keep = n_records
if behind_held then
  keep = 0
elseif max_length > 0 then
  local room = max_length - redis.call('XLEN', KEYS[1])
  if room < n_records then
    -- keep the oldest of the batch, in order, as far as there is room
    keep = math.max(room, 0)
  end
end
-- Record r's identity is token:(first + r - 1); Lua prints a number below
-- 10^14 as its integer digits, and no producer numbers that many records.
-- Printing a number (sprintf %.14g) per record costs Redis about a sixth of
-- the script's time per record (docs/performance.md): the last two digits
-- come from this table, the others are printed once per hundred records.
local two_digits = {
  '00', '01', '02', '03', '04', '05', '06', '07', '08', '09', '10', '11', '12', '13', '14', '15', '16', '17', '18', '19',
  '20', '21', '22', '23', '24', '25', '26', '27', '28', '29', '30', '31', '32', '33', '34', '35', '36', '37', '38', '39',
  '40', '41', '42', '43', '44', '45', '46', '47', '48', '49', '50', '51', '52', '53', '54', '55', '56', '57', '58', '59',
  '60', '61', '62', '63', '64', '65', '66', '67', '68', '69', '70', '71', '72', '73', '74', '75', '76', '77', '78', '79',
  '80', '81', '82', '83', '84', '85', '86', '87', '88', '89', '90', '91', '92', '93', '94', '95', '96', '97', '98', '99',
}
local prefix, number = ARGV[10] .. ':', tonumber(ARGV[11])
local high = math.floor(number / 100)
local low = number - high * 100
local head = prefix .. high
local i = 13
for _ = 1, keep do
  local identity
  if high > 0 then identity = head .. two_digits[low + 1] else identity = prefix .. low end
  redis.call('XADD', KEYS[1], '*', '{{version}}', schema, '{{record}}', ARGV[i],
             '{{client}}', ARGV[i + 1], '{{catcher}}', catcher, '{{received}}', ARGV[i + 2],
             '{{seq}}', identity)
  low = low + 1
  if low == 100 then
    low, high = 0, high + 1
    head = prefix .. high
  end
  i = i + 3
end
i = 13 + 3 * n_records
for _ = 1, n_dead do
  redis.call('XADD', KEYS[2], '*', '{{version}}', schema, '{{reason}}', ARGV[i + 1], '{{raw}}', ARGV[i],
             '{{client}}', ARGV[i + 2], '{{catcher}}', catcher, '{{received}}', ARGV[i + 3])
  i = i + 4
end
-- One XTRIM per batch that added letters: its reply is the exact count removed.  Approximate
-- (~): Redis drops whole stream nodes only, so the stream keeps up to one node more than asked.
local dead_max_length, dead_trimmed = tonumber(ARGV[12]), 0
if n_dead > 0 and dead_max_length > 0 then
  dead_trimmed = redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', dead_max_length)
end
local held, shed = 0, 0
if policy == 'block' or behind_held then held = n_records - keep else shed = n_records - keep end
if held == 0 then
  run_start, run_held = 0, 0
elseif not behind_held then
  run_start, run_held = seq, held
end
redis.call('SET', KEYS[3], seq .. ':' .. held .. ':' .. run_start .. ':' .. run_held, 'EX', ARGV[2])
return {keep, shed, held, dead_trimmed}
