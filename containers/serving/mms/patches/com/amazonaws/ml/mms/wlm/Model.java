package com.amazonaws.ml.mms.wlm;

import com.amazonaws.ml.mms.archive.ModelArchive;
import com.amazonaws.ml.mms.util.ConfigManager;
import java.io.File;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A registered model: its settings, its job queues, and how a worker collects a batch.
 *
 * <p>Replaces MMS 1.1.11's class of the same name (containers/serving/mms/PATCHES.md) for one
 * reason: batch collection. MMS's version waits the whole max_batch_delay for company after the
 * first job, so a lone request always pays the full delay. Here the jobs already queued are taken
 * at once; the delay is spent only when the queue held some (the server is busy and more are on
 * their way), and ends at the first wait that brings none. Everything else keeps MMS's contract:
 * the same public members, a per-worker control queue (model loads) served first, one bounded
 * data queue, and one idle worker collecting at a time.
 */
public class Model {

    public static final String DEFAULT_DATA_QUEUE = "DATA_QUEUE";

    private final ModelArchive modelArchive;
    private final String preloadModel;
    // DEFAULT_DATA_QUEUE: the requests, bounded by job_queue_size; a worker's thread name: its control commands.
    private final Map<String, LinkedBlockingDeque<Job>> queues = new ConcurrentHashMap<>();
    private final ReentrantLock collecting = new ReentrantLock();
    private final AtomicInteger port = new AtomicInteger(-1);
    private final AtomicInteger failedInfReqs = new AtomicInteger();
    private volatile int minWorkers;
    private volatile int maxWorkers;
    private volatile int batchSize = 1;
    private volatile int maxBatchDelay = 100; // milliseconds, MMS's default
    private volatile int responseTimeoutSeconds;
    private volatile WorkerThread serverThread;

    public Model(ModelArchive modelArchive, int queueSize, String preloadModel) {
        this.modelArchive = modelArchive;
        this.preloadModel = preloadModel;
        queues.put(DEFAULT_DATA_QUEUE, new LinkedBlockingDeque<>(queueSize));
    }

    /**
     * Fill jobsRepo with the next batch for worker threadId: one control command of its own if it
     * has any (waiting up to waitTime ms for it), else data jobs: the first as long as it takes,
     * then those already queued, then, only if there were some, more for up to max_batch_delay.
     */
    public void pollBatch(String threadId, long waitTime, Map<String, Job> jobsRepo)
            throws InterruptedException {
        if (jobsRepo == null || threadId == null || threadId.isEmpty()) {
            throw new IllegalArgumentException("pollBatch needs a worker's thread name and a job map");
        }
        if (!jobsRepo.isEmpty()) {
            throw new IllegalArgumentException("pollBatch was given a job map that still holds jobs");
        }
        LinkedBlockingDeque<Job> control = queues.get(threadId);
        if (control != null && !control.isEmpty()) {
            Job command = control.poll(waitTime, TimeUnit.MILLISECONDS);
            if (command != null) {
                jobsRepo.put(command.getJobId(), command);
                return;
            }
        }
        LinkedBlockingDeque<Job> data = queues.get(DEFAULT_DATA_QUEUE);
        collecting.lockInterruptibly();
        try {
            Job first = data.take();
            jobsRepo.put(first.getJobId(), first);
            takeQueued(data, jobsRepo);
            if (jobsRepo.size() > 1) {
                waitForMore(data, jobsRepo);
            }
        } finally {
            collecting.unlock();
        }
    }

    private void takeQueued(LinkedBlockingDeque<Job> data, Map<String, Job> batch) {
        Job next;
        while (batch.size() < batchSize && (next = data.poll()) != null) {
            batch.put(next.getJobId(), next);
        }
    }

    private void waitForMore(LinkedBlockingDeque<Job> data, Map<String, Job> batch)
            throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(maxBatchDelay);
        while (batch.size() < batchSize) {
            long left = deadline - System.nanoTime();
            Job next = left > 0 ? data.poll(left, TimeUnit.NANOSECONDS) : null;
            if (next == null) {
                return;
            }
            batch.put(next.getJobId(), next);
            takeQueued(data, batch);
        }
    }

    /** A control command (load, scale) for one worker. */
    public void addJob(String threadId, Job job) {
        queues.computeIfAbsent(threadId, name -> new LinkedBlockingDeque<>()).offer(job);
    }

    public void removeJobQueue(String threadId) {
        if (!DEFAULT_DATA_QUEUE.equals(threadId)) {
            queues.remove(threadId);
        }
    }

    /** A request; false when the data queue is full (job_queue_size). */
    public boolean addJob(Job job) {
        return queues.get(DEFAULT_DATA_QUEUE).offer(job);
    }

    /** A request handed back by a worker that could not run it: first in line again. */
    public void addFirst(Job job) {
        queues.get(DEFAULT_DATA_QUEUE).addFirst(job);
    }

    public String getModelName() {
        return modelArchive.getModelName();
    }

    public File getModelDir() {
        return modelArchive.getModelDir();
    }

    public String getModelUrl() {
        return modelArchive.getUrl();
    }

    public ModelArchive getModelArchive() {
        return modelArchive;
    }

    public int getMinWorkers() {
        return minWorkers;
    }

    public void setMinWorkers(int minWorkers) {
        this.minWorkers = minWorkers;
    }

    public int getMaxWorkers() {
        return maxWorkers;
    }

    public void setMaxWorkers(int maxWorkers) {
        this.maxWorkers = maxWorkers;
    }

    public int getBatchSize() {
        return batchSize;
    }

    public void setBatchSize(int batchSize) {
        this.batchSize = batchSize;
    }

    public int getMaxBatchDelay() {
        return maxBatchDelay;
    }

    public void setMaxBatchDelay(int maxBatchDelay) {
        this.maxBatchDelay = maxBatchDelay;
    }

    public int getPort() {
        return port.get();
    }

    public void setPort(int port) {
        this.port.set(port);
    }

    public int incrFailedInfReqs() {
        return failedInfReqs.incrementAndGet();
    }

    public void resetFailedInfReqs() {
        failedInfReqs.set(0);
    }

    public int getResponseTimeoutSeconds() {
        return ConfigManager.getInstance().isDebug() ? Integer.MAX_VALUE : responseTimeoutSeconds;
    }

    public void setResponseTimeoutSeconds(int responseTimeoutSeconds) {
        this.responseTimeoutSeconds = responseTimeoutSeconds;
    }

    public WorkerThread getServerThread() {
        return serverThread;
    }

    public void setServerThread(WorkerThread serverThread) {
        this.serverThread = serverThread;
    }

    public String preloadModel() {
        return preloadModel;
    }
}
