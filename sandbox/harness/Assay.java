// assay's Java test harness. The runner substitutes TESTS_CLASS with the tests' class name.
// Reads the nonce from stdin, closes stdin, keeps a private handle on stdout for its records
// (the program's System.out goes to stderr), runs the tests' main, and halts without running
// shutdown hooks. The runner rewrites every `assert` statement of the tests into Assay.check.
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Set;

public final class Assay {
    private static String nonce = "";
    private static PrintStream out;
    private static final Set<Integer> seen = new HashSet<>();
    private static final Set<Integer> failed = new HashSet<>();

    private Assay() {}

    private static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    private static void emit(String json) {
        out.print("\n@@assay:" + nonce + " " + json + "\n");
        out.flush();
    }

    public static void check(boolean ok, int line) {
        check(ok, line, null);
    }

    public static void check(boolean ok, int line, Object message) {
        if (failed.contains(line)) return;
        if (!ok) {
            failed.add(line);
            String text = message == null ? "assertion failed" : "assertion failed: " + message;
            emit("{\"t\": \"test\", \"line\": " + line + ", \"ok\": false, \"msg\": " + quote(text) + "}");
        } else if (seen.add(line)) {
            emit("{\"t\": \"test\", \"line\": " + line + ", \"ok\": true, \"msg\": \"\"}");
        }
    }

    public static void main(String[] args) throws Exception {
        InputStream in = System.in;
        nonce = new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
        in.close();
        out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        System.setOut(System.err);
        try {
            TESTS_CLASS.main(new String[0]);
        } catch (Throwable t) {
            emit("{\"t\": \"fatal\", \"msg\": " + quote("uncaught " + t) + "}");
        }
        emit("{\"t\": \"done\"}");
        Runtime.getRuntime().halt(0);
    }
}
