-- `swarm dead replay` marks what it re-published, so `swarm dead list` shows what is still dead.
ALTER TABLE dead_letters ADD COLUMN replayed_at timestamptz;
