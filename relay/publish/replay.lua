-- The replay script: one dead letter back into the records stream, atomically and once.
-- relay/publish/replay.py calls it; the entry's field names and values come from there (relay/common/stream.py).
-- KEYS: records stream, dead-letter stream (one hash slot: StreamKeys derives the second from the first)
-- ARGV: the dead letter's id, max_length (0: no limit), then the new entry's field, value pairs in order
-- Returns 1: replayed (the letter removed, the entry added); 0: the letter was not there (replayed or
-- purged before: nothing added); -1: the records stream holds max_length entries (nothing changed).
-- The letter's removal decides: a second replay of the same letter, or one after an interrupted run,
-- finds it gone and adds nothing.
for k = 1, 2 do
  -- Fail before the first write: a script stopped halfway keeps its writes.
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= 'stream' then
    return redis.error_reply('WRONGTYPE key ' .. KEYS[k] .. ' is a ' .. t .. ', not a stream')
  end
end
local max_length = tonumber(ARGV[2])
if max_length > 0 and redis.call('XLEN', KEYS[1]) >= max_length then
  return -1
end
if redis.call('XDEL', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
return 1
