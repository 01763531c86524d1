-- Instances' Postgres logs: shipped by their data plane's conductor, read by their org through the API.

-- name: log_offsets
-- Where each server's log of an instance of this data plane was last read to (nothing for another plane's).
SELECT l.server, max(l.end_offset)
  FROM control.instance_logs l JOIN control.instances i ON i.id = l.instance_id
 WHERE i.id::text = %(id)s AND i.data_plane = %(data_plane)s
 GROUP BY l.server;

-- name: append_log_lines
-- Lines of an instance's server logs, in order, only when the instance is this data plane's.
INSERT INTO control.instance_logs (instance_id, server, line, end_offset)
SELECT i.id, l.server, l.line, l.end_offset
  FROM control.instances i,
       unnest(%(servers)s::text[], %(lines)s::text[], %(ends)s::bigint[])
           WITH ORDINALITY AS l (server, line, end_offset, n)
 WHERE i.id::text = %(id)s AND i.data_plane = %(data_plane)s
 ORDER BY l.n;

-- name: trim_logs
-- Keep the newest %(keep)s lines of an instance.
DELETE FROM control.instance_logs
 WHERE instance_id::text = %(id)s
   AND seq <= (SELECT seq FROM control.instance_logs WHERE instance_id::text = %(id)s
                ORDER BY seq DESC OFFSET %(keep)s LIMIT 1);

-- name: instance_logs
-- An instance's log lines after seq %(after)s received since %(since)s (NULL: any time), oldest first.
SELECT seq, received_at, server, line
  FROM control.instance_logs
 WHERE instance_id = %(id)s::uuid AND seq > %(after)s
   AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s::timestamptz)
 ORDER BY seq
 LIMIT %(limit)s;
