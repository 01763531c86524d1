CREATE SCHEMA migtest;
CREATE TABLE migtest.things (id bigint PRIMARY KEY, name text NOT NULL);
