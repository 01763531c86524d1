-- What each data plane's provider can do for a spec beyond the basics (``connection_pooler``, ``ip_allow_list``),
-- as its conductor reports them when it registers; NULL: not reported yet, specs are then not checked against it.
ALTER TABLE control.data_planes ADD COLUMN features text[];
