-- Two indexes on blocks that no query reads. Nothing looks blocks up by
-- stream; claims of pending blocks go through blocks_pending, time ranges
-- through blocks_by_time, and a listing of every kind (the blocks view) cannot
-- use an index that starts with one kind. Each cost every group commit a B-tree
-- insert per block, blocks_by_stream at a random place: together about half
-- the pages a commit wrote.
DROP INDEX IF EXISTS blocks_by_stream;
DROP INDEX IF EXISTS blocks_by_insert;
