-- Kestrel schema 8: an account's own egress proxy.
-- proxy: the proxy URL sealed like the credential (it may hold a password), NULL for none
-- (the environment's proxy, if any, is used); proxy_hint: the URL without its password.
ALTER TABLE accounts ADD COLUMN proxy BLOB;
ALTER TABLE accounts ADD COLUMN proxy_hint TEXT;
