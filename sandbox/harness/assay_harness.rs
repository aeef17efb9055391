// assay's Rust test harness, appended to the program (the tests come in via include!).
// Reads the nonce in main (Rust has no code before main), closes stdin, keeps a private copy of
// stdout for its records (the program's prints go to stderr), runs the tests' main under
// catch_unwind and exits without running destructors. The runner defines assert!, assert_eq!
// and assert_ne! as macros that report their line through `assay_harness::check`.
#[allow(dead_code)]
mod assay_harness {
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::io::{Read, Write};
    use std::os::unix::io::FromRawFd;

    extern "C" {
        fn dup(fd: i32) -> i32;
        fn dup2(old: i32, new: i32) -> i32;
        fn open(path: *const u8, flags: i32, ...) -> i32;
        fn _exit(code: i32) -> !;
    }

    struct State {
        nonce: String,
        out: Option<std::fs::File>,
        seen: HashSet<u32>,
        failed: HashSet<u32>,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State { nonce: String::new(), out: None, seen: HashSet::new(), failed: HashSet::new() });
    }

    fn quote(s: &str) -> String {
        let mut q = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => q.push_str(&format!("\\u{:04x}", (c as u32) & 0xffff)),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    }

    fn emit(json: &str) {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let line = format!("\n@@assay:{} {}\n", s.nonce, json);
            if let Some(out) = s.out.as_mut() {
                let _ = out.write_all(line.as_bytes());
            }
        });
    }

    pub fn check(ok: bool, line: u32, text: &str) {
        let (failed, seen) = STATE.with(|s| {
            let s = s.borrow();
            (s.failed.contains(&line), s.seen.contains(&line))
        });
        if failed {
            return;
        }
        if !ok {
            STATE.with(|s| s.borrow_mut().failed.insert(line));
            emit(&format!("{{\"t\": \"test\", \"line\": {}, \"ok\": false, \"msg\": {}}}", line, quote(&format!("assertion failed: {}", text))));
        } else if !seen {
            STATE.with(|s| s.borrow_mut().seen.insert(line));
            emit(&format!("{{\"t\": \"test\", \"line\": {}, \"ok\": true, \"msg\": \"\"}}", line));
        }
    }

    pub fn run(tests: fn()) -> ! {
        let mut nonce = String::new();
        let _ = std::io::stdin().read_to_string(&mut nonce);
        unsafe {
            let null = open(b"/dev/null\0".as_ptr(), 0);
            dup2(null, 0);
            let out = dup(1);
            dup2(2, 1);
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                s.nonce = nonce.trim().to_string();
                s.out = Some(std::fs::File::from_raw_fd(out));
            });
        }
        std::panic::set_hook(Box::new(|_| {}));
        if let Err(payload) = std::panic::catch_unwind(tests) {
            let text = if let Some(s) = payload.downcast_ref::<&str>() {
                s.to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                String::from("panic")
            };
            emit(&format!("{{\"t\": \"fatal\", \"msg\": {}}}", quote(&format!("panicked: {}", text))));
        }
        emit("{\"t\": \"done\"}");
        unsafe { _exit(0) }
    }
}
