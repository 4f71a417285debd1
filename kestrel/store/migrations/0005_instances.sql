-- Kestrel schema 5: each request log row names the instance that served it (INSTANCE_NAME), so
-- the logs of many instances sharing one database can be told apart. Older rows have none.
ALTER TABLE request_logs ADD COLUMN instance TEXT;
