//! The Lua scripts, loaded once per process. Each `.lua` file says, at its top, which
//! atomicity it buys; `redis::Script` sends EVALSHA and reloads the script after a restart
//! (NOSCRIPT), so a restarted Redis needs nothing from us.

use std::sync::OnceLock;

use redis::Script;

pub(crate) struct Scripts {
    pub(crate) push_bounded: Script,
    pub(crate) ack: Script,
    pub(crate) fail: Script,
    pub(crate) mover: Script,
    pub(crate) reclaim: Script,
    pub(crate) renew: Script,
    pub(crate) handback: Script,
}

pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        push_bounded: Script::new(include_str!("scripts/push_bounded.lua")),
        ack: Script::new(include_str!("scripts/ack.lua")),
        fail: Script::new(include_str!("scripts/fail.lua")),
        mover: Script::new(include_str!("scripts/move.lua")),
        reclaim: Script::new(include_str!("scripts/reclaim.lua")),
        renew: Script::new(include_str!("scripts/renew.lua")),
        handback: Script::new(include_str!("scripts/handback.lua")),
    })
}
