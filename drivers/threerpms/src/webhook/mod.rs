//! 3RPMS webhooks: see the module files.
