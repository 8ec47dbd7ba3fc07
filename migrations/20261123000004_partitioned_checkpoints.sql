-- Projections run in partitions: a task's events belong to one partition (derived from its
-- subject), each partition has one owner at a time and its own checkpoint, so several projector
-- processes share the work without reordering any task's events.
ALTER TABLE projection_checkpoints ADD COLUMN partition integer NOT NULL DEFAULT 0
    CHECK (partition >= 0);
-- The layout a checkpoint belongs to. A batch checks it on the row it locks, so a projector
-- still on the old layout cannot commit after a rebuild swapped in a new one, even when the
-- new checkpoint happens to equal the one it expected.
ALTER TABLE projection_checkpoints ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE projection_checkpoints ADD COLUMN partitions integer NOT NULL DEFAULT 1;
ALTER TABLE projection_checkpoints DROP CONSTRAINT projection_checkpoints_pkey;
ALTER TABLE projection_checkpoints ADD PRIMARY KEY (projection, partition);

-- What a projection's rows were built with: the code's projection version and the partition
-- count. A deployment whose code or settings differ rebuilds the projection (blue/green) and
-- then records the new layout, in the same transaction as the swap.
CREATE TABLE projection_layouts (
    projection  text        PRIMARY KEY,
    version     integer     NOT NULL CHECK (version >= 1),
    partitions  integer     NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    built_at    timestamptz NOT NULL DEFAULT now()
);

-- Read models built before partitions existed were one partition at version 1.
INSERT INTO projection_layouts (projection, version, partitions)
SELECT DISTINCT projection, 1, 1 FROM projection_checkpoints;
