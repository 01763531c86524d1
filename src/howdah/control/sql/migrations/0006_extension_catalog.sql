-- The extensions each data plane offers, as its conductor reports them when it registers (the JSON form of
-- howdah.control.extensions.ExtensionCatalog; NULL: not reported yet, extension names are then not checked).
ALTER TABLE control.data_planes ADD COLUMN extension_catalog jsonb
    CHECK (extension_catalog IS NULL OR jsonb_typeof(extension_catalog -> 'extensions') = 'array');
