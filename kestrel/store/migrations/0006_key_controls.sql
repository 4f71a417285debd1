-- Kestrel schema 6: what a client key may do, set by the operator (all optional).
-- models: a JSON array of allowed model names, `*` matching any run of characters; NULL is any.
ALTER TABLE api_keys ADD COLUMN models TEXT;
ALTER TABLE api_keys ADD COLUMN expires_at REAL;
-- allowed_ips: a JSON array of networks in CIDR form the key may be used from; NULL is anywhere.
ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT;
ALTER TABLE api_keys ADD COLUMN owner TEXT;
ALTER TABLE api_keys ADD COLUMN note TEXT;
