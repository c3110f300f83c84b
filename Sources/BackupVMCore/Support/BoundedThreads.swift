import Foundation

/// Runs a blocking body for each item, at most `width` at once, each on a thread of its own, and
/// waits for all. After the first failure no item is started any more and `onFirstFailure` runs (to
/// cut the bodies still running, e.g. by raising their abort flag); that failure is thrown, not what
/// the cut ones threw after it. `stop`, when raised, also starts no more (the bodies watch it too).
enum BoundedThreads {
    static func forEach<T: Sendable>(
        _ items: [T], width: Int, stop: AbortFlag? = nil, onFirstFailure: @escaping @Sendable () -> Void = {},
        _ body: @escaping @Sendable (T) throws -> Void
    ) throws {
        let state = BoundedThreadState()
        let group = DispatchGroup()
        for worker in 0..<max(1, min(width, items.count)) {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                while let i = state.next(of: items.count, unless: stop) {
                    do { try body(items[i]) } catch { if state.failed(error) { onFirstFailure() } }
                }
            }
            thread.name = "bounded \(worker)"
            thread.start()
        }
        group.wait()
        if let error = state.firstError { throw error }
    }
}

/// The next item to start and the first failure, shared by the threads.
private final class BoundedThreadState: @unchecked Sendable {
    private let lock = NSLock()
    private var taken = 0
    private var error: Error?

    /// The index of the next item, or nil once all are taken, one failed or `stop` is raised.
    func next(of count: Int, unless stop: AbortFlag?) -> Int? {
        lock.withLock {
            guard taken < count, error == nil, stop?.isRaised != true else { return nil }
            defer { taken += 1 }
            return taken
        }
    }

    /// Records a failure; true for the first one.
    func failed(_ e: Error) -> Bool {
        lock.withLock {
            guard error == nil else { return false }
            error = e
            return true
        }
    }

    var firstError: Error? { lock.withLock { error } }
}

/// A blocking body run on a thread of its own while the caller does something else; `wait()` returns
/// what it returned or throws what it threw.
final class BackgroundWork<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, Error>?

    init(_ name: String, _ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            result = Result { try body() }
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    func wait() throws -> T {
        done.wait()
        done.signal()  // later waits return at once
        return try result!.get()
    }
}
