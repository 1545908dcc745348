//! How much memory the device has, where the backend can tell: on Vulkan, the size of the largest
//! device-local heap and, when the driver has `VK_EXT_memory_budget`, the budget it gives this
//! process for that heap (what other programs leave free). wgpu has no portable query, so other
//! backends report nothing and the planner asks for a user budget.

/// Device memory as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Size of the largest device-local heap.
    pub heap_bytes: u64,
    /// This process's budget for that heap (`VK_EXT_memory_budget`), when available.
    pub budget_bytes: Option<u64>,
}

impl DeviceMemory {
    /// What a plan may use: the budget when the driver gives one, else the heap.
    pub fn usable(&self) -> u64 {
        self.budget_bytes.unwrap_or(self.heap_bytes).min(self.heap_bytes)
    }
}

/// Query the device's memory, or `None` where the backend cannot say.
pub fn device_memory(device: &wgpu::Device) -> Option<DeviceMemory> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        vulkan_memory(device)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = device;
        None
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn vulkan_memory(device: &wgpu::Device) -> Option<DeviceMemory> {
    use ash::vk;
    // SAFETY: only read-only queries on the physical device; the hal guard keeps the device alive.
    unsafe {
        let hal = device.as_hal::<wgpu::hal::api::Vulkan>()?;
        let instance = hal.shared_instance().raw_instance();
        let physical = hal.raw_physical_device();
        let has_budget = instance
            .enumerate_device_extension_properties(physical)
            .ok()?
            .iter()
            .any(|e| e.extension_name_as_c_str() == Ok(vk::EXT_MEMORY_BUDGET_NAME));
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut props = vk::PhysicalDeviceMemoryProperties2::default();
        if has_budget {
            props = props.push_next(&mut budget);
        }
        instance.get_physical_device_memory_properties2(physical, &mut props);
        let mem = props.memory_properties;
        let heaps = &mem.memory_heaps[..mem.memory_heap_count as usize];
        let (index, heap) = heaps
            .iter()
            .enumerate()
            .filter(|(_, h)| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
            .max_by_key(|(_, h)| h.size)?;
        let budget_bytes = has_budget.then(|| budget.heap_budget[index]).filter(|&b| b > 0);
        Some(DeviceMemory { heap_bytes: heap.size, budget_bytes })
    }
}

/// Bytes of buffer and texture memory the backend itself has allocated (wgpu's internal
/// counters), to cross-check the [`super::MemoryTracker`]; `None` where the backend does not count.
pub fn backend_memory_bytes(device: &wgpu::Device) -> Option<u64> {
    let counters = device.get_internal_counters();
    let bytes = counters.hal.buffer_memory.read() + counters.hal.texture_memory.read();
    // A backend that does not count reports 0 even with buffers alive.
    (bytes > 0 || counters.hal.buffers.read() == 0).then_some(bytes as u64)
}
