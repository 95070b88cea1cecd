-- A dead letter whose publish to the dead queue fails is requeued and dead-lettered again on its
-- next attempt: it gets one row, not one per attempt. The index covers rows not yet replayed, so
-- a replayed message that fails again gets a row of its own. Workers insert with
-- ON CONFLICT DO NOTHING, which needs no privilege beyond INSERT.
DELETE FROM dead_letters later USING dead_letters first
 WHERE later.replayed_at IS NULL AND first.replayed_at IS NULL
   AND later.queue = first.queue AND later.message_id = first.message_id
   AND later.id > first.id;
CREATE UNIQUE INDEX dead_letters_once ON dead_letters (queue, message_id) WHERE replayed_at IS NULL;
